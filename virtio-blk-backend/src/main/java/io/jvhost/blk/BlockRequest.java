package io.jvhost.blk;

import java.lang.foreign.MemorySegment;

/**
 * One block I/O request handed to a {@link BlockStore}. Reused by the device after completion:
 * a store must not touch it once {@link #complete} returned.
 *
 * <p>READ and WRITE cover {@code [offset(), offset() + length())} with the data in
 * {@link #segment(int) segments} of guest memory, in order. DISCARD and WRITE_ZEROES cover
 * {@link #rangeCount() ranges}. FLUSH has neither.
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
    MemorySegment[] segments;
    long[] segmentGpas;
    io.jvhost.core.memory.DirtyLog log;
    long statusGpa;
    int segmentCount;
    final long[] rangeOffsets;
    final long[] rangeLengths;
    int rangeCount;
    // Where the device writes the status byte, and what the used element reports.
    int head;
    MemorySegment status;
    long usedLength;
    int completedStatus;

    /** Receives completed requests; the device's per-queue completion queue. */
    interface Completer {
        void completed(BlockRequest request);
    }

    BlockRequest(int slot, int maxSegments, int maxRanges, Completer completer) {
        this.slot = slot;
        this.completer = completer;
        this.segments = new MemorySegment[maxSegments];
        this.segmentGpas = new long[maxSegments];
        this.rangeOffsets = new long[maxRanges];
        this.rangeLengths = new long[maxRanges];
    }

    void segmentsGrown(MemorySegment[] grown) {
        segments = grown;
        segmentGpas = java.util.Arrays.copyOf(segmentGpas, grown.length);
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

    /** Guest memory for the data, in disk order. */
    public MemorySegment segment(int i) {
        return segments[i];
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
