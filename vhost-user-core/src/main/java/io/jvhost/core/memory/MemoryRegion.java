package io.jvhost.core.memory;

import io.jvhost.core.sys.Fd;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * One mapped guest memory region: guest-physical range {@code [gpa, gpa + size)}, seen by the
 * frontend at {@code hva}, mapped here as {@link #segment()}. Immutable; the mapping lives until
 * {@link #unmap()}, which the control thread calls only after no poller can reach the region.
 */
public final class MemoryRegion {
    private final long gpa;
    private final long size;
    private final long hva;
    private final long mmapOffset;
    private final MemorySegment segment;
    private final Arena arena;
    /** The frontend's fd, kept so that a successor process can map the same memory (live upgrade). */
    private final Fd fd;
    int references = 1;

    MemoryRegion(long gpa, long size, long hva, long mmapOffset, MemorySegment segment, Arena arena, Fd fd) {
        this.gpa = gpa;
        this.size = size;
        this.hva = hva;
        this.mmapOffset = mmapOffset;
        this.segment = segment;
        this.arena = arena;
        this.fd = fd;
    }

    /** A duplicate of the fd the region is mapped from, kept for a live upgrade, or null; closed by {@link #unmap()}. */
    public Fd fd() {
        return fd;
    }

    /** How many ADD_MEM_REG messages added this same region (REM_MEM_REG removes one each). */
    public int references() {
        return references;
    }

    public long gpa() {
        return gpa;
    }

    public long size() {
        return size;
    }

    public long hva() {
        return hva;
    }

    public long mmapOffset() {
        return mmapOffset;
    }

    public MemorySegment segment() {
        return segment;
    }

    /** Same guest range at the same frontend address: a duplicate QEMU may send once per queue pair. */
    boolean sameAs(long otherGpa, long otherSize, long otherHva) {
        return gpa == otherGpa && size == otherSize && hva == otherHva;
    }

    /** Whether two unsigned ranges [a, a + n) overlap. */
    static boolean overlaps(long a, long n, long b, long m) {
        return Long.compareUnsigned(a, b + m - 1) <= 0 && Long.compareUnsigned(b, a + n - 1) <= 0;
    }

    void unmap() {
        arena.close();
        if (fd != null) {
            fd.close();
        }
    }

    @Override
    public String toString() {
        return String.format("gpa 0x%x+0x%x hva 0x%x off 0x%x", gpa, size, hva, mmapOffset);
    }
}
