package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A reusable {@code struct iovec} array for one gathering write (a frame in several pieces of
 * guest memory, behind its header): {@link #clear()}, {@link #add} the pieces in order, then hand it
 * to {@link FileCalls#writev} or {@link TapInterface#write(int, IoVector)}. Native, allocated once;
 * allocation-free after. One thread at a time; the caller keeps the pieces' memory mapped until
 * the write returns.
 */
public final class IoVector {
    private static final long ENTRY = 16;
    private final MemorySegment iov;
    /** The pieces' segments, kept reachable until the write (no slices are made). */
    private final MemorySegment[] segments;
    private int count;
    private long length;

    /** Room for {@code capacity} pieces (at most 1024, Linux's UIO_MAXIOV). */
    public IoVector(int capacity) {
        if (capacity < 1 || capacity > 1024) {
            throw new IllegalArgumentException("an iovec array holds 1..1024 pieces: " + capacity);
        }
        this.iov = Arena.ofAuto().allocate(ENTRY * capacity, 8);
        this.segments = new MemorySegment[capacity];
    }

    /** Forgets the pieces. */
    public IoVector clear() {
        for (int i = 0; i < count; i++) {
            segments[i] = null;
        }
        count = 0;
        length = 0;
        return this;
    }

    /**
     * Appends {@code [offset, offset + length)} of the native {@code segment}; false when the array
     * is full or the segment's memory is unmapped already (nothing added then). Out of bounds throws.
     */
    public boolean add(MemorySegment segment, long offset, long length) {
        if (count == segments.length) {
            return false;
        }
        long address = FileCalls.addressOf(segment, offset, length);
        if (address == 0) {
            return false;
        }
        iov.set(JAVA_LONG, count * ENTRY, address);
        iov.set(JAVA_LONG, count * ENTRY + 8, length);
        segments[count++] = segment;
        this.length += length;
        return true;
    }

    /** Pieces added since the last {@link #clear()}. */
    public int count() {
        return count;
    }

    /** Their bytes in all. */
    public long length() {
        return length;
    }

    /** Most pieces it takes. */
    public int capacity() {
        return segments.length;
    }

    /** The native array, for the write; {@code segments} must stay reachable until it returns. */
    MemorySegment array() {
        return iov;
    }

    /** Keeps the pieces' segments (and so their arenas) reachable up to the caller's fence. */
    MemorySegment[] segments() {
        return segments;
    }
}
