package io.jvhost.core.ring;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.jvhost.core.ring.LeLayouts.LE_INT;
import static io.jvhost.core.ring.LeLayouts.LE_LONG;
import static io.jvhost.core.ring.LeLayouts.LE_SHORT;

/**
 * One queue's slice of the INFLIGHT_SHMFD region (vhost-user spec, "Inflight I/O tracking", split
 * rings): a flag and an order counter per descriptor head, so a backend restarted after a crash
 * can resubmit exactly the requests that were taken from the ring but never completed. The frontend
 * keeps the memfd across the backend's death and hands it to the next backend.
 *
 * <p>Layout: u64 features, u16 version, u16 desc_num, u16 last_batch_head, u16 used_idx, then per
 * head {u8 inflight, u8 pad[5], u16 next, u64 counter}. Poller thread only.
 */
public final class InflightLog {
    public static final int VERSION = 1;
    static final long HEADER = 16, DESC_SIZE = 16;
    private static final long VERSION_OFFSET = 8, DESC_NUM_OFFSET = 10, LAST_BATCH_HEAD_OFFSET = 12, USED_IDX_OFFSET = 14;

    private final MemorySegment region;
    private final int size;
    private long nextCounter = 1;

    /** Bytes one queue of {@code queueSize} needs, a multiple of 64. */
    public static long queueRegionSize(int queueSize) {
        return (HEADER + DESC_SIZE * queueSize + 63) & ~63L;
    }

    /** Writes a fresh header into a zeroed queue region. */
    public static void initialize(MemorySegment region, int queueSize) {
        region.set(LE_SHORT, VERSION_OFFSET, (short) VERSION);
        region.set(LE_SHORT, DESC_NUM_OFFSET, (short) queueSize);
    }

    public InflightLog(MemorySegment region, int size) {
        if (region.byteSize() < queueRegionSize(size)) {
            throw new IllegalArgumentException("inflight region of " + region.byteSize() + " bytes for queue size " + size);
        }
        this.region = region;
        this.size = size;
    }

    int size() {
        return size;
    }

    private long desc(int head) {
        return HEADER + DESC_SIZE * head;
    }

    /** A chain at {@code head} was taken from the ring. */
    void mark(int head) {
        region.set(LE_LONG, desc(head) + 8, nextCounter++);
        region.set(ValueLayout.JAVA_BYTE, desc(head), (byte) 1);
    }

    /** Used elements {@code [from, to)} are published: their heads are no longer in flight. */
    void published(MemorySegment used, int from, int to) {
        for (int i = from; i != to; i = (i + 1) & 0xFFFF) {
            int head = used.get(LE_INT, SplitRing.RING_OFFSET + (long) SplitRing.USED_ELEM_SIZE * (i & (size - 1)));
            if (head >= 0 && head < size) {
                region.set(ValueLayout.JAVA_BYTE, desc(head), (byte) 0);
                region.set(LE_SHORT, LAST_BATCH_HEAD_OFFSET, (short) head);
            }
        }
        region.set(LE_SHORT, USED_IDX_OFFSET, (short) to);
    }

    /**
     * After a restart: reconciles the log with the used ring (a crash may have come between
     * publishing used elements and clearing their flags), then writes the heads still in flight
     * into {@code heads} in the order they were taken, and returns how many.
     */
    int recover(MemorySegment used, int usedIdx, int[] heads) {
        int logged = Short.toUnsignedInt(region.get(LE_SHORT, USED_IDX_OFFSET));
        if (logged != usedIdx && ((usedIdx - logged) & 0xFFFF) <= size) {
            published(used, logged, usedIdx);
        }
        region.set(LE_SHORT, USED_IDX_OFFSET, (short) usedIdx);
        int n = 0;
        long maxCounter = 0;
        for (int h = 0; h < size; h++) {
            if (region.get(ValueLayout.JAVA_BYTE, desc(h)) != 0) {
                heads[n++] = h;
                maxCounter = Math.max(maxCounter, region.get(LE_LONG, desc(h) + 8));
            }
        }
        nextCounter = maxCounter + 1;
        // Insertion sort by counter: n is at most the queue size and this runs once per restart.
        for (int i = 1; i < n; i++) {
            int h = heads[i];
            long c = region.get(LE_LONG, desc(h) + 8);
            int j = i - 1;
            while (j >= 0 && region.get(LE_LONG, desc(heads[j]) + 8) > c) {
                heads[j + 1] = heads[j];
                j--;
            }
            heads[j + 1] = h;
        }
        return n;
    }
}
