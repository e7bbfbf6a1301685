package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link IoVector} with the running kernel's writev: pieces of different native segments go out as
 * one write in the order they were added, and the vector is reused after {@code clear}; a full
 * vector, a piece of unmapped memory and a piece out of its segment's bounds are refused.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class IoVectorTest {
    private static MemorySegment bytes(Arena arena, String s) {
        return arena.allocateFrom(ValueLayout.JAVA_BYTE, s.getBytes(java.nio.charset.StandardCharsets.US_ASCII));
    }

    @Test
    void shouldWriteThePiecesOfSeveralSegmentsAsOneInOrder(@TempDir Path dir) throws Exception {
        Path file = Files.createFile(dir.resolve("out"));
        try (Arena arena = Arena.ofConfined(); Fd fd = Fd.adopt(FileCalls.open(file.toString(), FileCalls.O_RDWR))) {
            MemorySegment header = bytes(arena, "HDR-"), guest = bytes(arena, "..first..second..");
            IoVector v = new IoVector(4);
            assertTrue(v.add(header, 0, 4));
            assertTrue(v.add(guest, 2, 5));
            assertTrue(v.add(guest, 9, 6));
            assertEquals(3, v.count());
            assertEquals(15, v.length());
            assertEquals(15, FileCalls.writev(fd.get(), v));
            assertEquals("HDR-firstsecond", Files.readString(file));

            v.clear();
            assertEquals(0, v.count());
            assertTrue(v.add(guest, 9, 6));
            assertEquals(6, FileCalls.writev(fd.get(), v));
            assertEquals("HDR-firstsecondsecond", Files.readString(file), "cleared: only the new piece");
        }
    }

    @Test
    void shouldRefuseAPieceOnceFullOrWhenItsMemoryIsUnmappedAndThrowOutOfBounds() {
        IoVector v = new IoVector(1);
        MemorySegment gone;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocate(16);
            assertTrue(v.add(s, 0, 16));
            assertFalse(v.add(s, 0, 1), "full");
            assertThrows(IndexOutOfBoundsException.class, () -> new IoVector(2).add(s, 8, 9));
            gone = arena.allocate(8);
        }
        assertFalse(v.clear().add(gone, 0, 8), "unmapped");
        assertEquals(0, v.count());
        assertThrows(IllegalArgumentException.class, () -> new IoVector(0));
        assertThrows(IllegalArgumentException.class, () -> new IoVector(1025));
    }
}
