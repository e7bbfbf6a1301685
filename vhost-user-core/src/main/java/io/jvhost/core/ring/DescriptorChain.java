package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED;
import static java.nio.ByteOrder.LITTLE_ENDIAN;

/**
 * A reusable, allocation-free view of one descriptor chain: each descriptor is read from guest
 * memory exactly once, checked, and kept as (region, offset, length, writable). Later reads of the
 * chain never go back to the descriptor table, so a driver rewriting it concurrently changes nothing.
 *
 * <p>Owned by the queue's poller thread; valid until the next {@link VirtQueue#next()}.
 */
public final class DescriptorChain {
    static final int DESC_SIZE = 16;
    static final int F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4;
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
    DirtyLog log;

    DescriptorChain(int capacity) {
        this.capacity = capacity;
        this.region = new int[capacity];
        this.offset = new long[capacity];
        this.length = new int[capacity];
        this.writable = new boolean[capacity];
    }

    /** Head descriptor index: what the used ring entry names. */
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
     * buffers, in order, starting {@code skip} bytes into them. Returns the bytes copied.
     */
    public long write(MemorySegment src, long srcOffset, long skip, long max) {
        long done = 0;
        for (int i = readableCount; i < count && done < max; i++) {
            int n = length[i];
            if (skip >= n) {
                skip -= n;
                continue;
            }
            long chunk = Math.min(n - skip, max - done);
            MemorySegment.copy(src, srcOffset + done, memory.segment(region[i]), offset[i] + skip, chunk);
            if (log != null) {
                log.mark(gpa(i) + skip, chunk);
            }
            done += chunk;
            skip = 0;
        }
        return done;
    }

    /** Copies up to {@code max} readable bytes, starting {@code skip} bytes in, into {@code dst}. */
    public long read(long skip, MemorySegment dst, long dstOffset, long max) {
        long done = 0;
        for (int i = 0; i < readableCount && done < max; i++) {
            int n = length[i];
            if (skip >= n) {
                skip -= n;
                continue;
            }
            long chunk = Math.min(n - skip, max - done);
            MemorySegment.copy(memory.segment(region[i]), offset[i] + skip, dst, dstOffset + done, chunk);
            done += chunk;
            skip = 0;
        }
        return done;
    }

    /**
     * Walks the chain at {@code head} of a table of {@code tableSize} descriptors and returns null,
     * or the reason it is malformed. Nothing outside {@code table} and checked buffers is read.
     */
    ChainError parse(MemorySegment table, int tableSize, int head, GuestMemory mem, boolean indirectAllowed) {
        this.memory = mem;
        this.head = head;
        count = 0;
        readableCount = 0;
        readableLength = 0;
        writableLength = 0;
        MemorySegment t = table;
        long tBase = 0;
        int tSize = tableSize;
        boolean inIndirect = false;
        int i = head;
        while (true) {
            long d = tBase + (long) i * DESC_SIZE;
            long addr = t.get(JAVA_LONG_LE, d);
            int len = t.get(JAVA_INT_LE, d + 8);
            int flags = Short.toUnsignedInt(t.get(JAVA_SHORT_LE, d + 12));
            int next = Short.toUnsignedInt(t.get(JAVA_SHORT_LE, d + 14));
            if ((flags & F_INDIRECT) != 0) {
                if (!indirectAllowed) {
                    return ChainError.INDIRECT_NOT_NEGOTIATED;
                }
                if (inIndirect) {
                    return ChainError.INDIRECT_NESTED;
                }
                if ((flags & F_NEXT) != 0) {
                    return ChainError.INDIRECT_WITH_NEXT;
                }
                long tableLength = Integer.toUnsignedLong(len);
                if (tableLength == 0 || tableLength % DESC_SIZE != 0 || tableLength / DESC_SIZE > capacity) {
                    return ChainError.INDIRECT_BAD_LENGTH;
                }
                int r = mem.regionOf(addr, tableLength);
                if (r < 0) {
                    return ChainError.INDIRECT_UNMAPPED;
                }
                t = mem.segment(r);
                tBase = addr - mem.gpaBase(r);
                tSize = (int) (tableLength / DESC_SIZE);
                inIndirect = true;
                i = 0;
                continue;
            }
            if (count == capacity) {
                return ChainError.CHAIN_TOO_LONG;
            }
            boolean w = (flags & F_WRITE) != 0;
            if (!w && count > readableCount) {
                return ChainError.READABLE_AFTER_WRITABLE;
            }
            long n = Integer.toUnsignedLong(len);
            if (len < 0) {
                return ChainError.BUFFER_TOO_LONG;
            }
            if (n == 0) {
                region[count] = -1;
                offset[count] = 0;
            } else {
                int r = mem.regionOf(addr, n);
                if (r < 0) {
                    return ChainError.BUFFER_UNMAPPED;
                }
                region[count] = r;
                offset[count] = addr - mem.gpaBase(r);
            }
            length[count] = len;
            writable[count] = w;
            if (w) {
                writableLength += n;
            } else {
                readableCount++;
                readableLength += n;
            }
            count++;
            if ((flags & F_NEXT) == 0) {
                return null;
            }
            if (next >= tSize) {
                return ChainError.NEXT_OUT_OF_RANGE;
            }
            i = next;
        }
    }

    // Unaligned: an indirect table may sit at any guest address (the main table is 16-aligned).
    static final java.lang.foreign.ValueLayout.OfLong JAVA_LONG_LE = JAVA_LONG_UNALIGNED.withOrder(LITTLE_ENDIAN);
    static final java.lang.foreign.ValueLayout.OfInt JAVA_INT_LE = JAVA_INT_UNALIGNED.withOrder(LITTLE_ENDIAN);
    static final java.lang.foreign.ValueLayout.OfShort JAVA_SHORT_LE = JAVA_SHORT_UNALIGNED.withOrder(LITTLE_ENDIAN);

    @Override
    public String toString() {
        StringBuilder b = new StringBuilder("chain head=").append(head).append(" [");
        for (int i = 0; i < count; i++) {
            b.append(i == 0 ? "" : ", ").append(writable[i] ? "W" : "R").append(length[i]);
        }
        return b.append(']').toString();
    }
}
