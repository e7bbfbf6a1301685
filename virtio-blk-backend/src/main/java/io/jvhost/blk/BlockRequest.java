package io.jvhost.blk;

import io.jvhost.core.sys.IoUring;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * One block I/O request handed to a {@link BlockStore}. Reused by the device after completion:
 * a store must not touch it once {@link #complete} returned.
 *
 * <p>READ and WRITE cover {@code [offset(), offset() + length())} with the data in
 * {@link #segmentCount()} segments of guest memory, in disk order. Segment {@code i} is the bytes
 * {@code [segmentOffset(i), segmentOffset(i) + segmentLength(i))} of {@link #segmentMemory(i)}, the
 * mapping of the guest memory region that holds it: copy or do I/O with those three and nothing is
 * allocated per request. {@link #segment(int)} returns the same bytes as a slice (one new object per
 * call). DISCARD and WRITE_ZEROES cover {@link #rangeCount() ranges}. FLUSH has neither.
 *
 * <p>Any thread may read a request between {@link BlockStore#submit} and {@link #complete}; guest
 * memory stays mapped until then.
 */
public final class BlockRequest {
    public static final int STATUS_OK = 0, STATUS_IOERR = 1, STATUS_UNSUPP = 2;

    /** What the guest asks for. */
    public enum Type { READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES }

    final int slot;
    final Completer completer;
    Type type;
    long offset;
    long length;
    boolean durable;
    boolean unmap;
    // Data segment i: bytes [segmentOffsets[i], + segmentLengths[i]) of segmentMemory[i], a region's mapping.
    MemorySegment[] segmentMemory;
    long[] segmentOffsets;
    long[] segmentLengths;
    long[] segmentGpas;
    io.jvhost.core.memory.DirtyLog log;
    long statusGpa;
    int segmentCount;
    final long[] rangeOffsets;
    final long[] rangeLengths;
    int rangeCount;
    // Where the device writes the status byte (statusOffset in a region's mapping), and what the
    // used element reports.
    int head;
    MemorySegment statusMemory;
    long statusOffset;
    long usedLength;
    int completedStatus;

    /** Receives completed requests; the device's per-queue completion queue. */
    interface Completer {
        void completed(BlockRequest request);
    }

    BlockRequest(int slot, int maxSegments, int maxRanges, Completer completer) {
        this.slot = slot;
        this.completer = completer;
        this.segmentMemory = new MemorySegment[maxSegments];
        this.segmentOffsets = new long[maxSegments];
        this.segmentLengths = new long[maxSegments];
        this.segmentGpas = new long[maxSegments];
        this.rangeOffsets = new long[maxRanges];
        this.rangeLengths = new long[maxRanges];
    }

    /** Adds a data segment; the arrays grow (rarely: they are kept for reuse) when full. */
    void addSegment(MemorySegment memory, long offset, long length, long gpa) {
        int n = segmentCount;
        if (n == segmentMemory.length) {
            segmentMemory = Arrays.copyOf(segmentMemory, 2 * n);
            segmentOffsets = Arrays.copyOf(segmentOffsets, 2 * n);
            segmentLengths = Arrays.copyOf(segmentLengths, 2 * n);
            segmentGpas = Arrays.copyOf(segmentGpas, 2 * n);
        }
        segmentMemory[n] = memory;
        segmentOffsets[n] = offset;
        segmentLengths[n] = length;
        segmentGpas[n] = gpa;
        segmentCount = n + 1;
    }

    public Type type() {
        return type;
    }

    /** Byte offset into the disk (READ, WRITE). */
    public long offset() {
        return offset;
    }

    /** Bytes to transfer (READ, WRITE): the sum of the segments' sizes. */
    public long length() {
        return length;
    }

    /** WRITE with the guest's write cache off: the data must be durable before completion. */
    public boolean durable() {
        return durable;
    }

    /** WRITE_ZEROES that may deallocate the range. */
    public boolean unmap() {
        return unmap;
    }

    public int segmentCount() {
        return segmentCount;
    }

    /**
     * The mapping of the guest memory region that holds data segment {@code i}: a store touches only
     * its bytes {@code [segmentOffset(i), segmentOffset(i) + segmentLength(i))}. Allocation-free.
     */
    public MemorySegment segmentMemory(int i) {
        return segmentMemory[i];
    }

    /** Where data segment {@code i} starts in {@link #segmentMemory(int)}. */
    public long segmentOffset(int i) {
        return segmentOffsets[i];
    }

    /** Bytes in data segment {@code i}; the segments' lengths add up to {@link #length()}. */
    public long segmentLength(int i) {
        return segmentLengths[i];
    }

    /**
     * Writes the data segments as {@code struct iovec}s (base address, then length; 16 bytes each)
     * into {@code iov}, which has room for {@link #segmentCount()} of them: for a store that hands
     * guest memory straight to the kernel (io_uring) or a library (librbd), which then reads and
     * writes it directly. That is safe because guest memory stays mapped while a request is in
     * flight (the device's queue stop waits for it). Allocation-free.
     */
    void writeIovecs(MemorySegment iov) {
        for (int i = 0; i < segmentCount; i++) {
            long at = i * IoUring.IOVEC_SIZE;
            iov.set(ValueLayout.JAVA_LONG, at + IoUring.IOV_BASE_OFFSET, segmentMemory[i].address() + segmentOffsets[i]);
            iov.set(ValueLayout.JAVA_LONG, at + IoUring.IOV_LEN_OFFSET, segmentLengths[i]);
        }
    }

    /**
     * Data segment {@code i} as a slice of guest memory. Convenient, but it allocates a new segment
     * object on every call: on a hot path use {@link #segmentMemory}, {@link #segmentOffset} and
     * {@link #segmentLength}, e.g.
     * {@code MemorySegment.copy(disk, at, r.segmentMemory(i), r.segmentOffset(i), r.segmentLength(i))}.
     */
    public MemorySegment segment(int i) {
        return segmentMemory[i].asSlice(segmentOffsets[i], segmentLengths[i]);
    }

    public int rangeCount() {
        return rangeCount;
    }

    public long rangeOffset(int i) {
        return rangeOffsets[i];
    }

    public long rangeLength(int i) {
        return rangeLengths[i];
    }

    /** Finishes the request with a {@code STATUS_*} value. Any thread, exactly once. */
    public void complete(int status) {
        completedStatus = status;
        completer.completed(this);
    }

    @Override
    public String toString() {
        return type + " @" + offset + "+" + length + (rangeCount > 0 ? " ranges " + rangeCount : "");
    }
}
