package io.jvhost.core.ring;

import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static io.jvhost.core.ring.LeLayouts.LE_INT;
import static io.jvhost.core.ring.LeLayouts.LE_LONG;
import static io.jvhost.core.ring.LeLayouts.LE_SHORT;

/**
 * One queue's slice of the INFLIGHT_SHMFD region for a packed ring (vhost-user spec, "Inflight I/O
 * tracking", {@code QueueRegionPacked}): every descriptor the device takes is copied into a
 * {@code DescStatePacked} entry taken from a free list, so a backend restarted after a crash can
 * resubmit exactly the chains that were taken and not used, even though the driver and the device
 * have long since overwritten their slots in the descriptor ring. The used position and wrap counter
 * are kept twice (new and old) so that a crash in the middle of publishing a batch is rolled back or
 * committed on recovery, whichever the ring says happened.
 *
 * <p>Layout: u64 features, u16 version, u16 desc_num, u16 free_head, u16 old_free_head, u16 used_idx,
 * u16 old_used_idx, u8 used_wrap_counter, u8 old_used_wrap_counter, u8 padding[7]; at byte 32 per
 * entry {u8 inflight, u8 pad, u16 next, u16 last, u16 num, u64 counter, u16 id, u16 flags, u32 len,
 * u64 addr}. The region belongs to the frontend, so every index read from it is checked; a region
 * that makes no sense stops the tracking (logged), never the queue. Poller thread only.
 */
public final class PackedInflightLog {
    private static final Logger LOG = LoggerFactory.getLogger(PackedInflightLog.class);
    public static final int VERSION = 1;
    static final long HEADER = 32, ENTRY_SIZE = 32;
    private static final long VERSION_OFFSET = 8, DESC_NUM_OFFSET = 10, FREE_HEAD_OFFSET = 12, OLD_FREE_HEAD_OFFSET = 14,
            USED_IDX_OFFSET = 16, OLD_USED_IDX_OFFSET = 18, USED_WRAP_OFFSET = 20, OLD_USED_WRAP_OFFSET = 21;
    private static final long E_INFLIGHT = 0, E_NEXT = 2, E_LAST = 4, E_NUM = 6, E_COUNTER = 8, E_ID = 16, E_FLAGS = 18,
            E_LEN = 20, E_ADDR = 24;

    private final MemorySegment region;
    private final int size;
    private long nextCounter = 1;
    // Our copies of the header fields we write; the region is only read back on recovery.
    private int freeHead;
    /** Entry of the chain being recorded by {@link #begin}/{@link #add}; -1 when none. */
    private int current = -1;
    private int currentNum;
    /** Entries of the chains completed since the last publish, and how many. */
    private final int[] batch;
    private int batchCount;
    private boolean failed;

    /** Bytes one queue of {@code queueSize} needs, a multiple of 64. */
    public static long queueRegionSize(int queueSize) {
        return (HEADER + ENTRY_SIZE * queueSize + 63) & ~63L;
    }

    /** Writes a fresh header and free list (every entry free, wrap counters 1) into a zeroed queue region. */
    public static void initialize(MemorySegment region, int queueSize) {
        region.set(LE_SHORT, VERSION_OFFSET, (short) VERSION);
        region.set(LE_SHORT, DESC_NUM_OFFSET, (short) queueSize);
        region.set(LE_SHORT, FREE_HEAD_OFFSET, (short) 0);
        region.set(LE_SHORT, OLD_FREE_HEAD_OFFSET, (short) 0);
        region.set(LE_SHORT, USED_IDX_OFFSET, (short) 0);
        region.set(LE_SHORT, OLD_USED_IDX_OFFSET, (short) 0);
        region.set(ValueLayout.JAVA_BYTE, USED_WRAP_OFFSET, (byte) 1);
        region.set(ValueLayout.JAVA_BYTE, OLD_USED_WRAP_OFFSET, (byte) 1);
        for (int j = 0; j < queueSize; j++) {
            long e = HEADER + ENTRY_SIZE * j;
            region.set(ValueLayout.JAVA_BYTE, e + E_INFLIGHT, (byte) 0);
            region.set(LE_SHORT, e + E_NEXT, (short) (j + 1));
            region.set(LE_LONG, e + E_COUNTER, 0L);
        }
    }

    public PackedInflightLog(MemorySegment region, int size) {
        if (region.byteSize() < queueRegionSize(size)) {
            throw new IllegalArgumentException("inflight region of " + region.byteSize() + " bytes for queue size " + size);
        }
        this.region = region;
        this.size = size;
        this.batch = new int[size];
    }

    /** Whether a corrupt region made this log stop tracking. */
    boolean failed() {
        return failed;
    }

    private long entry(int e) {
        return HEADER + ENTRY_SIZE * e;
    }

    private int u16(long offset) {
        return Short.toUnsignedInt(region.get(LE_SHORT, offset));
    }

    private void fail(String why) {
        if (!failed) {
            failed = true;
            LOG.error("inflight region for a packed queue of {} is corrupt ({}); no longer tracking requests in flight",
                    size, why);
        }
    }

    /** A chain is being taken: the next {@link #add}s are its descriptors. */
    void begin() {
        if (failed) {
            return;
        }
        int head = freeHead;
        if (head >= size) {
            fail("free list empty at the head of a chain");
            return;
        }
        long e = entry(head);
        region.set(LE_SHORT, e + E_NUM, (short) 0);
        region.set(LE_LONG, e + E_COUNTER, nextCounter++);
        region.set(ValueLayout.JAVA_BYTE, e + E_INFLIGHT, (byte) 1);
        current = head;
        currentNum = 0;
    }

    /** One descriptor of the chain begun, exactly as read from the ring. */
    void add(long addr, int len, int id, int flags) {
        if (failed || current < 0) {
            return;
        }
        int slot = freeHead;
        if (slot >= size) {
            fail("free list shorter than the chains in flight");
            return;
        }
        long e = entry(slot);
        region.set(LE_LONG, e + E_ADDR, addr);
        region.set(LE_INT, e + E_LEN, len);
        region.set(LE_SHORT, e + E_ID, (short) id);
        region.set(LE_SHORT, e + E_FLAGS, (short) flags);
        currentNum++;
        long h = entry(current);
        region.set(LE_SHORT, h + E_NUM, (short) currentNum);
        region.set(LE_SHORT, h + E_LAST, (short) slot);
        freeHead = u16(e + E_NEXT);
        region.set(LE_SHORT, FREE_HEAD_OFFSET, (short) freeHead);
    }

    /** The chain begun is taken; returns its entry (what {@link #completed} gets back), or -1 when not tracked. */
    int end() {
        int head = current;
        current = -1;
        if (failed) {
            return -1;
        }
        region.set(LE_SHORT, OLD_FREE_HEAD_OFFSET, (short) freeHead);
        return head;
    }

    /**
     * The chain in {@code entry} was given back untouched (a rewind): its entries go back on the free
     * list and it is no longer in flight.
     */
    void untaken(int entry) {
        if (failed || entry < 0) {
            return;
        }
        release(entry);
        region.set(ValueLayout.JAVA_BYTE, entry(entry) + E_INFLIGHT, (byte) 0);
        region.set(LE_SHORT, OLD_FREE_HEAD_OFFSET, (short) freeHead);
    }

    private void release(int entry) {
        long h = entry(entry);
        int last = u16(h + E_LAST);
        if (last >= size) {
            fail("last entry " + last + " of entry " + entry);
            return;
        }
        region.set(LE_SHORT, entry(last) + E_NEXT, (short) freeHead);
        freeHead = entry;
        region.set(LE_SHORT, FREE_HEAD_OFFSET, (short) freeHead);
    }

    /**
     * The chain in {@code entry} has a used descriptor in the batch being written. Its entries stay
     * taken until the batch is published: a chain taken meanwhile must not reuse them, since a
     * crash before the publish leaves this one in flight.
     */
    void completed(int entry) {
        if (failed || entry < 0) {
            return;
        }
        if (batchCount == batch.length) {
            fail("more completions than the queue holds");
            return;
        }
        batch[batchCount++] = entry;
    }

    /**
     * Before the release store that publishes the batch: the batch's entries go back on the free
     * list, and the used position it ends at is written (both undone on recovery unless the ring
     * shows the batch was published).
     */
    void publishing(int usedPos, int usedWrap) {
        if (failed) {
            return;
        }
        for (int i = 0; i < batchCount; i++) {
            release(batch[i]);
        }
        region.set(LE_SHORT, USED_IDX_OFFSET, (short) usedPos);
        region.set(ValueLayout.JAVA_BYTE, USED_WRAP_OFFSET, (byte) usedWrap);
    }

    /** After the release store: the batch's chains are no longer in flight; the new state is the old one. */
    void published(int usedPos, int usedWrap) {
        if (failed) {
            return;
        }
        for (int i = 0; i < batchCount; i++) {
            region.set(ValueLayout.JAVA_BYTE, entry(batch[i]) + E_INFLIGHT, (byte) 0);
        }
        batchCount = 0;
        region.set(LE_SHORT, OLD_FREE_HEAD_OFFSET, (short) freeHead);
        region.set(LE_SHORT, OLD_USED_IDX_OFFSET, (short) usedPos);
        region.set(ValueLayout.JAVA_BYTE, OLD_USED_WRAP_OFFSET, (byte) usedWrap);
    }

    /** What {@link #recover} found. */
    record Recovery(boolean used, int usedPos, int usedWrap, int chains, int slots) {
        /** The vring base to resume at in a ring of {@code size}: avail is {@link #slots} past used. */
        long base(int size) {
            int pos = usedPos + slots, wrap = usedWrap;
            if (pos >= size) {
                pos -= size;
                wrap ^= 1;
            }
            return PackedLayout.base(pos, wrap, usedPos, usedWrap);
        }
    }

    /**
     * After a restart: commits or rolls back a batch the previous backend was publishing when it
     * died (by the flags of the descriptor at the old used position in {@code ring}), clears the
     * in-flight mark of every free entry, and writes the entries still in flight into
     * {@code heads} in the order they were taken. A region never used (no chain was ever taken
     * through it) is reset to the queue's {@code usedPos}/{@code usedWrap} and reports
     * {@link Recovery#used()} false: the frontend's base is the truth then. Control of the queue's
     * position is the caller's.
     */
    Recovery recover(MemorySegment ring, int[] heads, int usedPos, int usedWrap) {
        failed = false;
        batchCount = 0;
        current = -1;
        int version = u16(VERSION_OFFSET), descNum = u16(DESC_NUM_OFFSET);
        boolean everUsed = false;
        if (version == VERSION && descNum == size) {
            for (int j = 0; j < size && !everUsed; j++) {
                everUsed = region.get(LE_LONG, entry(j) + E_COUNTER) != 0;
            }
        }
        if (!everUsed) {
            if (version != VERSION || descNum != size) {
                LOG.info("inflight region for a packed queue of {} was laid out for {} (version {}); starting it afresh",
                        size, descNum, version);
            }
            initialize(region, size);
            region.set(LE_SHORT, USED_IDX_OFFSET, (short) usedPos);
            region.set(LE_SHORT, OLD_USED_IDX_OFFSET, (short) usedPos);
            region.set(ValueLayout.JAVA_BYTE, USED_WRAP_OFFSET, (byte) usedWrap);
            region.set(ValueLayout.JAVA_BYTE, OLD_USED_WRAP_OFFSET, (byte) usedWrap);
            freeHead = 0;
            nextCounter = 1;
            return new Recovery(false, usedPos, usedWrap, 0, 0);
        }
        int newUsed = u16(USED_IDX_OFFSET), oldUsed = u16(OLD_USED_IDX_OFFSET);
        int newWrap = region.get(ValueLayout.JAVA_BYTE, USED_WRAP_OFFSET) & 1;
        int oldWrap = region.get(ValueLayout.JAVA_BYTE, OLD_USED_WRAP_OFFSET) & 1;
        int newFree = u16(FREE_HEAD_OFFSET), oldFree = u16(OLD_FREE_HEAD_OFFSET);
        if (oldUsed >= size || newUsed >= size) {
            fail("used index " + oldUsed + "/" + newUsed);
            return new Recovery(false, usedPos, usedWrap, 0, 0);
        }
        if (newUsed != oldUsed || newWrap != oldWrap) {
            // A batch was being published. Its first used descriptor went out last: if the slot no
            // longer holds what the driver made available in that lap, the batch reached the driver.
            int flags = Short.toUnsignedInt(ring.get(LE_SHORT, (long) oldUsed * PackedLayout.DESC_SIZE + 14));
            if (!PackedLayout.isAvailable(flags, oldWrap)) {
                oldUsed = newUsed;
                oldWrap = newWrap;
                oldFree = newFree;
            }
        }
        region.set(LE_SHORT, USED_IDX_OFFSET, (short) oldUsed);
        region.set(LE_SHORT, OLD_USED_IDX_OFFSET, (short) oldUsed);
        region.set(ValueLayout.JAVA_BYTE, USED_WRAP_OFFSET, (byte) oldWrap);
        region.set(ValueLayout.JAVA_BYTE, OLD_USED_WRAP_OFFSET, (byte) oldWrap);
        region.set(LE_SHORT, FREE_HEAD_OFFSET, (short) oldFree);
        region.set(LE_SHORT, OLD_FREE_HEAD_OFFSET, (short) oldFree);
        freeHead = oldFree;
        int steps = 0;
        for (int j = oldFree; j < size; j = u16(entry(j) + E_NEXT)) {
            if (++steps > size) {
                fail("the free list loops");
                return new Recovery(false, usedPos, usedWrap, 0, 0);
            }
            region.set(ValueLayout.JAVA_BYTE, entry(j) + E_INFLIGHT, (byte) 0);
        }
        int n = 0, slots = 0;
        long maxCounter = 0;
        for (int j = 0; j < size; j++) {
            long e = entry(j);
            maxCounter = Math.max(maxCounter, region.get(LE_LONG, e + E_COUNTER));
            if (region.get(ValueLayout.JAVA_BYTE, e + E_INFLIGHT) != 0) {
                int num = u16(e + E_NUM);
                if (num < 1 || num > size) {
                    fail("entry " + j + " of " + num + " descriptors");
                    return new Recovery(false, usedPos, usedWrap, 0, 0);
                }
                heads[n++] = j;
                slots += num;
            }
        }
        if (slots > size) {
            fail(slots + " descriptors in flight");
            return new Recovery(false, usedPos, usedWrap, 0, 0);
        }
        nextCounter = maxCounter + 1;
        for (int i = 1; i < n; i++) { // insertion sort by counter: once per restart
            int h = heads[i];
            long c = region.get(LE_LONG, entry(h) + E_COUNTER);
            int j = i - 1;
            while (j >= 0 && region.get(LE_LONG, entry(heads[j]) + E_COUNTER) > c) {
                heads[j + 1] = heads[j];
                j--;
            }
            heads[j + 1] = h;
        }
        return new Recovery(true, oldUsed, oldWrap, n, slots);
    }

    /**
     * Reads the in-flight chain at {@code entry} (its descriptors as they were made available, at
     * most the queue size, each link checked) into {@code chain}; returns its buffer id, or -1 when a
     * link points outside the region.
     */
    int readChain(int entry, DescriptorChain chain, GuestMemory memory, boolean indirect) {
        int num = u16(entry(entry) + E_NUM);
        chain.begin(0, memory);
        int e = entry, id = 0;
        for (int i = 0; i < num; i++) {
            if (i > 0 && (e = u16(entry(e) + E_NEXT)) >= size) {
                return -1;
            }
            long at = entry(e);
            id = u16(at + E_ID);
            if (chain.error() == null) {
                PackedLayout.addBuffer(chain, memory, indirect, region.get(LE_LONG, at + E_ADDR),
                        region.get(LE_INT, at + E_LEN), u16(at + E_FLAGS));
            }
        }
        return id;
    }

    /** Descriptors of the in-flight chain at {@code entry}. */
    int chainLength(int entry) {
        return u16(entry(entry) + E_NUM);
    }
}
