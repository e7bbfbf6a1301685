package io.jvhost.core.ring;

import java.lang.invoke.VarHandle;

import static io.jvhost.core.ring.LeLayouts.LE_LONG;
import static io.jvhost.core.ring.PackedLayout.DESC_SIZE;
import static io.jvhost.core.ring.PackedLayout.F_WRITE;
import static io.jvhost.core.ring.PackedLayout.LEN_OFFSET;

/**
 * A {@link PackedRing}'s bursts ({@link BufferBurst}): one-buffer chains taken, given back and
 * completed together with only what a burst needs. A burst is completed or given back before the
 * ring takes anything else, so its chains stay out of the ring's taken log (kept for rewinds of
 * chains taken one by one), each takes exactly one slot, and their ids were checked when taken.
 * Split from the ring as {@link PackedUsed} is (MergeableRxBench.deliverBurst, packed: 19.2 -> 16.8
 * ns a frame without the per-chain bookkeeping; perf/RESULTS.md 2026-12-07). Poller thread.
 */
final class PackedBursts {
    private PackedBursts() {
    }

    /** See {@link Ring#takeBurst}. */
    static int take(PackedRing r, BufferBurst b, int max, long headroom, long[] lengths, int from, boolean writable) {
        if (r.resubmitNext < r.resubmitCount || r.inflight != null) {
            return 0;
        }
        int size = r.size;
        int[] slotsOf = r.slotsOf;
        int pos = r.availPos, wrap = r.availWrap, k = 0;
        int n = PackedLayout.availableRun(r.ring, size, pos, wrap, max, writable ? F_WRITE : 0);
        VarHandle.acquireFence(); // the descriptors are read after their flags said available
        for (; k < n; k++) {
            long d = (long) pos * DESC_SIZE;
            long tail = r.ring.get(LE_LONG, d + LEN_OFFSET); // len and id; plain: after the acquire of the flags
            int len = (int) tail, id = (int) (tail >>> 32) & 0xFFFF;
            if (len < headroom + lengths[from + k] || id >= size || slotsOf[id] != 0
                    || !b.put(k, id, r.ring.get(LE_LONG, d), len, r.memory)) {
                break;
            }
            slotsOf[id] = 1;
            if (++pos == size) {
                pos = 0;
                wrap ^= 1;
            }
        }
        r.availPos = pos;
        r.availWrap = wrap;
        r.availableSeen &= k == 0;
        r.starvedAt = k > 0 ? -1 : r.starvedAt;
        return k;
    }

    /** See {@link Ring#giveBack}: one slot back per chain. */
    static void giveBack(PackedRing r, int[] ids, int from, int count) {
        if (count <= 0) {
            return;
        }
        for (int i = from; i < from + count; i++) {
            r.slotsOf[ids[i]] = 0;
        }
        r.starvedAt = r.availPos | r.availWrap << 15; // as a rewind: only new buffers count as work
        r.availPos -= count;
        if (r.availPos < 0) {
            r.availPos += r.size;
            r.availWrap ^= 1;
        }
        r.availableSeen = false;
    }

    /** See {@link Ring#completeBurst}. */
    static void complete(PackedRing r, int[] ids, long[] written, int n, boolean inOrder) {
        int[] slotsOf = r.slotsOf;
        PackedUsed used = r.used;
        for (int i = 0; i < n; i++) {
            int id = ids[i];
            long w = written[i];
            slotsOf[id] = 0;
            used.complete(id, w, 1, inOrder && w == 0);
        }
    }
}
