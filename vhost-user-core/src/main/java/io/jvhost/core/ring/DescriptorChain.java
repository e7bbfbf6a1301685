package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;

/**
 * A reusable, allocation-free view of one descriptor chain: each descriptor is read from guest
 * memory exactly once, checked, and kept as (region, offset, length, writable). Later reads of the
 * chain never go back to the descriptor table, so a driver rewriting it concurrently changes nothing.
 * Every check (bounds, loops, direction order) is done once, when the chain is parsed.
 *
 * <p>Devices move bytes with {@link #read} and {@link #write}, or walk the buffers with a
 * {@link ChainCursor} (pieces as region mapping, offset, length): the one place that walks a chain.
 * The per-buffer accessors ({@link #length(int)}, {@link #region(int)}, ...) are for tests and tools.
 *
 * <p>Owned by the queue's poller thread; valid until the next {@link VirtQueue#next()}.
 */
public final class DescriptorChain {
    private static final MemorySegment EMPTY = MemorySegment.ofArray(new byte[0]);

    private final int capacity;
    private final int[] region;
    private final long[] offset;
    private final int[] length;
    private final boolean[] writable;
    private int head;
    private int count;
    private int readableCount;
    private long readableLength;
    private long writableLength;
    private GuestMemory memory = GuestMemory.EMPTY;
    private ChainError error;
    DirtyLog log;
    /** The cursor {@link #read} and {@link #write} walk with. */
    private final ChainCursor copier = new ChainCursor();

    /**
     * An empty chain of at most {@code capacity} buffers, to be filled by {@link #parseSplit}: for
     * tests and fuzzers. Devices get theirs from {@link VirtQueue#next()}.
     */
    public DescriptorChain(int capacity) {
        if (capacity < 1 || capacity > VirtQueue.MAX_SIZE) {
            throw new IllegalArgumentException("capacity " + capacity);
        }
        this.capacity = capacity;
        this.region = new int[capacity];
        this.offset = new long[capacity];
        this.length = new int[capacity];
        this.writable = new boolean[capacity];
    }

    /** Most buffers a chain may have: the queue size. */
    public int capacity() {
        return capacity;
    }

    /** Null for every chain a queue hands out; after {@link #parseSplit}, why the chain is malformed. */
    public ChainError error() {
        return error;
    }

    /**
     * What the used element names: the head descriptor's index (split ring) or the buffer id
     * (packed ring). What {@link VirtQueue#complete(int, long)} takes.
     */
    public int head() {
        return head;
    }

    /** Number of buffers (descriptors other than indirect-table pointers). */
    public int count() {
        return count;
    }

    public int readableCount() {
        return readableCount;
    }

    public int writableCount() {
        return count - readableCount;
    }

    public long readableLength() {
        return readableLength;
    }

    public long writableLength() {
        return writableLength;
    }

    public boolean isWritable(int i) {
        return writable[i];
    }

    public int length(int i) {
        return length[i];
    }

    /** The guest memory region index of buffer {@code i} (-1 for a zero-length buffer). */
    public int region(int i) {
        return region[i];
    }

    /** Offset of buffer {@code i} within {@link GuestMemory#segment(int)} of its region. */
    public long offset(int i) {
        return offset[i];
    }

    public GuestMemory memory() {
        return memory;
    }

    /** The guest-physical address of buffer {@code i}. */
    public long gpa(int i) {
        return region[i] < 0 ? 0 : memory.gpaBase(region[i]) + offset[i];
    }

    /**
     * Records that the device wrote {@code length} bytes at {@code skip} into buffer {@code i} by
     * some other path than {@link #write} (a store's I/O, say): needed during live migration.
     */
    public void logWrite(int i, long skip, long length) {
        if (log != null && region[i] >= 0) {
            log.mark(gpa(i) + skip, length);
        }
    }

    /** The dirty log in force (null when not migrating); valid while this chain is. */
    public DirtyLog dirtyLog() {
        return log;
    }

    /** Buffer {@code i} as a bounds-checked slice of guest memory. Creates a slice object. */
    public MemorySegment segment(int i) {
        return region[i] < 0 ? EMPTY : memory.segment(region[i]).asSlice(offset[i], length[i]);
    }

    /**
     * Copies up to {@code max} bytes from {@code src} (at {@code srcOffset}) into the writable
     * buffers, in order, starting {@code skip} bytes into them, and marks them in the dirty log.
     * Returns the bytes copied.
     */
    public long write(MemorySegment src, long srcOffset, long skip, long max) {
        return copy(copier.writable(this, skip), src, srcOffset, max, true);
    }

    /** Copies up to {@code max} readable bytes, starting {@code skip} bytes in, into {@code dst}. */
    public long read(long skip, MemorySegment dst, long dstOffset, long max) {
        return copy(copier.readable(this, skip), dst, dstOffset, max, false);
    }

    /** The one copy loop of {@link #write} and {@link #read}: piece by piece of {@code b}, up to {@code max} bytes. */
    private static long copy(ChainCursor b, MemorySegment other, long otherOffset, long max, boolean intoChain) {
        long done = 0;
        while (b.next(max - done)) {
            done += intoChain ? b.copyFrom(other, otherOffset + done) : b.copyTo(other, otherOffset + done);
        }
        return done;
    }

    /**
     * Parses the split-ring chain at {@code head} of a descriptor table of {@code tableSize} entries
     * into this chain, translating every buffer through {@code memory}, and returns null or why it is
     * malformed (also kept in {@link #error()}). What {@link VirtQueue#next()} does for each head,
     * without a queue: for tests, fuzzers and tools. Devices get their chains from the queue.
     */
    public ChainError parseSplit(MemorySegment table, int tableSize, int head, GuestMemory memory,
                                 boolean indirectAllowed) {
        if (tableSize < 1 || head < 0 || head >= tableSize || table.byteSize() < (long) SplitRing.DESC_SIZE * tableSize) {
            throw new IllegalArgumentException("head " + head + " of a table of " + tableSize + " in "
                    + table.byteSize() + " bytes");
        }
        return SplitRing.parse(this, table, tableSize, head, memory, indirectAllowed);
    }

    /** Starts a new chain at {@code head}: no buffers yet. Ring layouts' parsers only. */
    void begin(int head, GuestMemory mem) {
        this.memory = mem;
        this.head = head;
        this.error = null;
        count = 0;
        readableCount = 0;
        readableLength = 0;
        writableLength = 0;
    }

    /** Names the chain by {@code id} once its layout has found it (the packed ring's buffer id). */
    void head(int id) {
        this.head = id;
    }

    /** Records that the chain is malformed; returns {@code e}. */
    ChainError fail(ChainError e) {
        error = e;
        return e;
    }

    /**
     * Appends the buffer a descriptor names, after the checks every layout shares: at most
     * {@link #capacity()} buffers (which also ends any loop), readable before writable, shorter than
     * 2 GiB, inside one guest memory region unless empty. Returns null, or the error (recorded).
     */
    ChainError add(long addr, int len, boolean w) {
        if (count == capacity) {
            return fail(ChainError.CHAIN_TOO_LONG);
        }
        if (!w && count > readableCount) {
            return fail(ChainError.READABLE_AFTER_WRITABLE);
        }
        if (len < 0) {
            return fail(ChainError.BUFFER_TOO_LONG);
        }
        if (len == 0) {
            region[count] = -1; // never translated: an empty buffer may name any address
            offset[count] = 0;
        } else {
            int r = memory.regionOf(addr, len);
            if (r < 0) {
                return fail(ChainError.BUFFER_UNMAPPED);
            }
            region[count] = r;
            offset[count] = addr - memory.gpaBase(r);
        }
        length[count] = len;
        writable[count] = w;
        if (w) {
            writableLength += len;
        } else {
            readableCount++;
            readableLength += len;
        }
        count++;
        return null;
    }

    @Override
    public String toString() {
        StringBuilder b = new StringBuilder("chain head=").append(head).append(" [");
        for (int i = 0; i < count; i++) {
            b.append(i == 0 ? "" : ", ").append(writable[i] ? "W" : "R").append(length[i]);
        }
        return b.append(']').toString();
    }
}
