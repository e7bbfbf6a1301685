package io.jvhost.testkit.frontend;

import io.jvhost.core.sys.FileCalls;
import io.jvhost.core.sys.Mappings;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Guest RAM on hugepages, as SPDK's vhost target requires and QEMU's
 * {@code memory-backend-memfd,hugetlb=on} gives: whole 2 MiB pages, and a backend that maps the fd
 * sees what the guest wrote (CI reserves hugepages; without them this fails, it does not skip).
 */
class GuestRamTest {
    private static final long MIB2 = 2L << 20;

    @Test
    void shouldRoundHugepageGuestRamUpToWholePagesThatABackendMapsAndSeesTheGuestsWrites() throws Exception {
        try (GuestRam ram = GuestRam.onHugepages(3L << 20); Arena arena = Arena.ofConfined()) {
            assertEquals(2 * MIB2, ram.size(), "3 MiB round up to two 2 MiB pages");
            assertEquals(MIB2, FileCalls.blockSize(ram.fd().get()), "the memfd is on 2 MiB pages");
            long gpa = ram.allocate(8, 8);
            ram.at(gpa, 8).set(ValueLayout.JAVA_LONG, 0, 0x1122_3344_5566_7788L);
            long last = ram.size() - 8;
            ram.at(last, 8).set(ValueLayout.JAVA_LONG, 0, -1L);
            MemorySegment backend = Mappings.map(ram.fd().get(), 0, ram.size(), arena);
            assertEquals(0x1122_3344_5566_7788L, backend.get(ValueLayout.JAVA_LONG, gpa));
            assertEquals(-1L, backend.get(ValueLayout.JAVA_LONG, last), "the second page too");
        }
    }
}
