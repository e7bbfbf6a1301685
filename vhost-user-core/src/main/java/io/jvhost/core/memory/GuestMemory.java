package io.jvhost.core.memory;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.Comparator;

/**
 * An immutable snapshot of the guest's memory table, safe to share between threads.
 *
 * <p>Every guest address a device or ring touches goes through {@link #regionOf} (allocation-free) or
 * {@link #translate}: both check that the whole range {@code [address, address + length)} lies in
 * one region without ever computing an overflowing sum, so a hostile address or length can never
 * reach memory outside the mapping. A buffer that crosses a region boundary is rejected.
 */
public final class GuestMemory {
    public static final GuestMemory EMPTY = new GuestMemory(new MemoryRegion[0]);

    private final MemoryRegion[] regions;
    private final long[] gpaStart;
    private final long[] gpaSize;
    private final MemorySegment[] segments;

    GuestMemory(MemoryRegion[] unsorted) {
        this.regions = unsorted.clone();
        Arrays.sort(regions, Comparator.comparing(MemoryRegion::gpa, Long::compareUnsigned));
        this.gpaStart = new long[regions.length];
        this.gpaSize = new long[regions.length];
        this.segments = new MemorySegment[regions.length];
        for (int i = 0; i < regions.length; i++) {
            gpaStart[i] = regions[i].gpa();
            gpaSize[i] = regions[i].size();
            segments[i] = regions[i].segment();
        }
    }

    public int regionCount() {
        return regions.length;
    }

    public MemoryRegion region(int index) {
        return regions[index];
    }

    /** The mapping of region {@code index}; byte 0 is guest address {@link #gpaBase}. */
    public MemorySegment segment(int index) {
        return segments[index];
    }

    public long gpaBase(int index) {
        return gpaStart[index];
    }

    private static boolean contains(long start, long size, long address, long length) {
        // unsigned: start <= address && length <= size && address - start <= size - length
        return Long.compareUnsigned(address, start) >= 0
                && Long.compareUnsigned(length, size) <= 0
                && Long.compareUnsigned(address - start, size - length) <= 0;
    }

    /**
     * The index of the region holding all of {@code [gpa, gpa + length)} ({@code length} unsigned),
     * or -1. Allocation-free; any thread.
     */
    public int regionOf(long gpa, long length) {
        long[] starts = gpaStart;
        int lo = 0, hi = starts.length - 1;
        while (lo <= hi) { // last region starting at or below gpa
            int mid = (lo + hi) >>> 1;
            if (Long.compareUnsigned(starts[mid], gpa) <= 0) {
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        return hi >= 0 && contains(starts[hi], gpaSize[hi], gpa, length) ? hi : -1;
    }

    /** A bounds-checked slice for a guest-physical range, or null when it is not in one region. */
    public MemorySegment translate(long gpa, long length) {
        int r = regionOf(gpa, length);
        return r < 0 ? null : segments[r].asSlice(gpa - gpaStart[r], length);
    }

    /**
     * A bounds-checked slice for a range of the frontend's virtual addresses (vring addresses come
     * this way), or null when it is not in one region. Control path.
     */
    public MemorySegment translateHva(long hva, long length) {
        for (MemoryRegion r : regions) {
            if (contains(r.hva(), r.size(), hva, length)) {
                return r.segment().asSlice(hva - r.hva(), length);
            }
        }
        return null;
    }

    /** The guest-physical address for a frontend virtual address, or -1 when unmapped. */
    public long hvaToGpa(long hva) {
        for (MemoryRegion r : regions) {
            if (contains(r.hva(), r.size(), hva, 1)) {
                return r.gpa() + (hva - r.hva());
            }
        }
        return -1;
    }

    @Override
    public String toString() {
        return Arrays.toString(regions);
    }
}
