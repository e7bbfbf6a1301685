package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;

import java.lang.foreign.MemorySegment;

/**
 * Walks the bytes of a {@link DescriptorChain} in pieces of guest memory, each a triple (the mapping
 * of its region, offset, length) that a device copies to or does I/O with directly: nothing is
 * allocated and no slice is made. The readable bytes form one stream and the writable bytes
 * another; a walk starts at any byte of either (or covers every buffer), skips empty buffers, and
 * can cap each piece. Every address was checked when the chain was parsed, so the walk does no
 * checking of its own.
 *
 * <pre>{@code
 * for (ChainCursor b = cursor.writable(chain, 0); b.next(left); left -= b.length()) {
 *     store.read(diskOffset, b.memory(), b.offset(), b.length());  // then b.markWritten() if not copyFrom
 * }
 * }</pre>
 *
 * <p>A device keeps one cursor per thread and reuses it for every chain; a cursor is valid while
 * the chain it walks is (until the next {@link VirtQueue#next()}).
 */
public final class ChainCursor {
    private DescriptorChain chain;
    /** The buffer of the current piece, or where the next one is looked for. */
    private int buffer;
    /** One past the last buffer of the walk. */
    private int end;
    /** Offset in {@link #buffer} where the next piece starts. */
    private long at;
    private MemorySegment memory;
    private long offset;
    private long length;

    /** Positions the cursor {@code skip} bytes into the readable bytes of {@code c}; returns it. */
    public ChainCursor readable(DescriptorChain c, long skip) {
        return start(c, 0, c.readableCount(), skip);
    }

    /** Positions the cursor {@code skip} bytes into the writable bytes of {@code c}; returns it. */
    public ChainCursor writable(DescriptorChain c, long skip) {
        return start(c, c.readableCount(), c.count(), skip);
    }

    /** Positions the cursor at the first byte of {@code c}: readable buffers, then writable ones. */
    public ChainCursor all(DescriptorChain c) {
        return start(c, 0, c.count(), 0);
    }

    private ChainCursor start(DescriptorChain c, int from, int to, long skip) {
        int i = from;
        long s = Math.max(skip, 0);
        while (i < to && s >= c.length(i)) {
            s -= c.length(i);
            i++;
        }
        chain = c;
        buffer = i;
        end = to;
        at = i < to ? s : 0;
        length = 0;
        return this;
    }

    /**
     * Moves to the next piece: the rest of the current buffer or the next non-empty one, at most
     * {@code max} bytes. Returns false, with {@link #length()} 0, at the end of the walk or when
     * {@code max} is 0 or less (the cursor then stays where it is).
     */
    public boolean next(long max) {
        DescriptorChain c = chain;
        int i = buffer;
        long a = at;
        while (i < end && a >= c.length(i)) {
            i++;
            a = 0;
        }
        buffer = i;
        at = a;
        if (i == end || max <= 0) {
            length = 0;
            return false;
        }
        long n = Math.min(c.length(i) - a, max);
        memory = c.memory().segment(c.region(i));
        offset = c.offset(i) + a;
        length = n;
        at = a + n;
        return true;
    }

    /** The mapping of the guest memory region that holds the current piece (not a slice of it). */
    public MemorySegment memory() {
        return memory;
    }

    /** Where the current piece starts in {@link #memory()}. */
    public long offset() {
        return offset;
    }

    /** Bytes in the current piece; 0 once {@link #next} returned false. */
    public long length() {
        return length;
    }

    /** The guest-physical address of the current piece. */
    public long gpa() {
        return chain.gpa(buffer) + (at - length);
    }

    /** The index of the buffer that holds the current piece, as in {@link DescriptorChain#length(int)}. */
    public int buffer() {
        return buffer;
    }

    /** Whether the current piece is in a device-writable buffer. */
    public boolean isWritable() {
        return chain.isWritable(buffer);
    }

    /** Copies the current piece into {@code dst} at {@code dstOffset}; returns its length. */
    public long copyTo(MemorySegment dst, long dstOffset) {
        MemorySegment.copy(memory, offset, dst, dstOffset, length);
        return length;
    }

    /**
     * Fills the current piece, which must be writable, from {@code src} at {@code srcOffset} and
     * marks it dirty; returns its length.
     */
    public long copyFrom(MemorySegment src, long srcOffset) {
        MemorySegment.copy(src, srcOffset, memory, offset, length);
        markWritten();
        return length;
    }

    /**
     * Records in the dirty log (live migration; nothing otherwise) that the device wrote the current
     * piece by some other path than {@link #copyFrom}: its own stores, or I/O.
     */
    public void markWritten() {
        DirtyLog log = chain.log;
        if (log != null) {
            log.mark(gpa(), length);
        }
    }
}
