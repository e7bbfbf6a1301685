package io.jvhost.core.ring;

import static io.jvhost.core.ring.LeLayouts.LE_SHORT;
import static io.jvhost.core.ring.SplitRing.DESC_ADDR;
import static io.jvhost.core.ring.SplitRing.DESC_LEN;
import static io.jvhost.core.ring.SplitRing.DESC_SIZE;
import static io.jvhost.core.ring.SplitRing.DESC_U16;
import static io.jvhost.core.ring.SplitRing.F_INDIRECT;
import static io.jvhost.core.ring.SplitRing.F_NEXT;
import static io.jvhost.core.ring.SplitRing.F_WRITE;
import static io.jvhost.core.ring.SplitRing.RING_OFFSET;

/**
 * A {@link SplitRing}'s bursts ({@link BufferBurst}): the avail ring's next heads read plainly after
 * one acquire of its index, each head's descriptor checked to be one buffer of the asked direction
 * and length; the first that is not ends the burst, for {@link SplitRing#take} to judge. Given back
 * and completed as chains taken one by one are (a rewind moves the avail position back). Split from
 * the ring as {@link PackedBursts} is from {@link PackedRing}. Poller thread.
 */
final class SplitBursts {
    private SplitBursts() {
    }

    /** See {@link Ring#takeBurst}. */
    static int take(SplitRing r, BufferBurst b, int max, long headroom, long[] lengths, int from, boolean writable) {
        if (r.resubmitNext < r.resubmitCount || r.inflight != null
                || (r.availIdxCache == r.lastAvailIdx && (!r.refreshAvailIdx() || r.availIdxCache == r.lastAvailIdx))) {
            return 0;
        }
        int n = Math.min(max, (r.availIdxCache - r.lastAvailIdx) & 0xFFFF);
        int size = r.size, at = r.lastAvailIdx, mask = size - 1, k = 0;
        for (; k < n; k++) { // plain reads: after the acquire of the avail index
            int head = Short.toUnsignedInt(r.avail.get(LE_SHORT, RING_OFFSET + 2L * ((at + k) & mask)));
            if (head >= size) {
                break; // take() latches the ring broken for it
            }
            long d = (long) head * DESC_SIZE;
            int flags = r.desc.get(DESC_U16, d + 12);
            int len = r.desc.get(DESC_LEN, d + 8);
            if ((flags & (F_NEXT | F_WRITE | F_INDIRECT)) != (writable ? F_WRITE : 0) || len < headroom + lengths[from + k]) {
                break;
            }
            if (!b.put(k, head, r.desc.get(DESC_ADDR, d), len, r.memory)) {
                break;
            }
        }
        r.lastAvailIdx = (at + k) & 0xFFFF;
        if (k > 0) {
            r.starvedAt = -1; // taken again after a rewind: no longer starved there
        }
        return k;
    }
}
