package io.jvhost.testkit.frontend;

import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.Mappings;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Simulated guest RAM: one memfd mapped here, presented to the backend as one or more regions.
 * Guest-physical address {@code gpa} lives at byte {@code gpa} of the memfd; the frontend virtual
 * address of a gpa is {@code HVA_BASE + gpa} (deliberately not the real mapping address, so a
 * backend that confuses the two address spaces fails tests). A bump allocator hands out buffers.
 *
 * <p>Confined to the test thread that uses it, except that the memory itself is shared.
 */
public final class GuestRam implements AutoCloseable {
    public static final long HVA_BASE = 0x7f00_0000_0000L;
    private static final long HUGEPAGE = 2L << 20;

    private final Arena arena = Arena.ofShared();
    private final Fd fd;
    private final long size;
    private final MemorySegment memory;
    private final long[] regionStarts;
    private long next = 0x1000; // keep gpa 0 unused so a zero address is always suspicious

    /**
     * {@code size} bytes split into regions at {@code splits} (ascending gpas), e.g. one split at
     * half the size gives two adjacent regions, for tests of buffers that cross a boundary.
     */
    public GuestRam(long size, long... splits) throws NativeException {
        this(size, false, splits);
    }

    private GuestRam(long size, boolean hugepages, long... splits) throws NativeException {
        this.size = size;
        this.fd = Mappings.memfd("jvhost-guest-ram", size, hugepages);
        this.memory = Mappings.map(fd.get(), 0, size, arena);
        this.regionStarts = new long[splits.length + 1];
        System.arraycopy(splits, 0, regionStarts, 1, splits.length);
    }

    /**
     * Guest RAM of at least {@code size} bytes on 2 MiB hugepages, in one region, as QEMU's
     * {@code memory-backend-memfd,hugetlb=on}: what SPDK's vhost target requires of guest memory.
     */
    public static GuestRam onHugepages(long size) throws NativeException {
        return new GuestRam(Math.addExact(size, HUGEPAGE - 1) & -HUGEPAGE, true);
    }

    public long size() {
        return size;
    }

    public Fd fd() {
        return fd;
    }

    public int regionCount() {
        return regionStarts.length;
    }

    public long regionGpa(int i) {
        return regionStarts[i];
    }

    public long regionSize(int i) {
        return (i + 1 < regionStarts.length ? regionStarts[i + 1] : size) - regionStarts[i];
    }

    public static long hva(long gpa) {
        return HVA_BASE + gpa;
    }

    /** The guest's view of {@code [gpa, gpa + length)}. */
    public MemorySegment at(long gpa, long length) {
        return memory.asSlice(gpa, length);
    }

    /** Allocates {@code length} bytes aligned to {@code align}; returns the gpa. */
    public long allocate(long length, long align) {
        long gpa = (next + align - 1) & -align;
        if (gpa + length > size) {
            throw new IllegalStateException("guest RAM exhausted");
        }
        next = gpa + length;
        return gpa;
    }

    @Override
    public void close() {
        arena.close();
        fd.close();
    }
}
