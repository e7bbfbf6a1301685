package io.jvhost.core.ring;

/**
 * Where a {@link VirtQueue} stands in its ring, which is what the control path asks and a device
 * never needs: the avail and used positions, the vring base that GET_VRING_BASE answers and
 * SET_VRING_BASE sets (and whether a base can be resumed at), and what the last
 * {@link VirtQueue#configure} found when it resumed (a corrected base, chains to resubmit). A view
 * of the queue's current {@link Ring}, whichever layout it is: it keeps no state of its own, so
 * the queue's data path does not go through it. Its methods on the queue's thread (the poller while
 * attached, the control thread while detached); the static {@link #baseProblem} on any.
 */
public final class QueuePosition {
    private final VirtQueue queue;

    QueuePosition(VirtQueue queue) {
        this.queue = queue;
    }

    /** Where the device takes the next chain: split the avail index, packed the position with its wrap counter in bit 15. */
    public int lastAvailIdx() {
        return queue.ring().availIdx();
    }

    /**
     * What GET_VRING_BASE answers (and SET_VRING_BASE sets): the avail index of a split ring; for a
     * packed ring the avail position and wrap counter (bit 15) in the low 16 bits and the used
     * position and wrap counter in the high 16 bits, as QEMU lays it out.
     */
    public long base() {
        return queue.ring().base();
    }

    /** The device's used index (packed: the used position with its wrap counter in bit 15), published or not. */
    public int usedIdx() {
        return queue.ring().usedIdx();
    }

    /**
     * Why {@code base} cannot be where a queue of {@code size} resumes, or null when it can: split
     * bases are 16 bits; a packed base's positions must be in the ring, used at most a ring behind
     * avail. For the control thread's check before {@link VirtQueue#configure}.
     */
    public static String baseProblem(int size, long base, boolean packed) {
        return packed ? PackedLayout.baseProblem(size, base) : SplitRing.baseProblem(base);
    }

    /** Whether {@link VirtQueue#configure} resumed elsewhere than the frontend's base (the driver may miss an interrupt). */
    public boolean baseCorrected() {
        return queue.ring().baseCorrected();
    }

    /** Chains still to be resubmitted after a restart. */
    public int resubmitPending() {
        return queue.ring().resubmitPending();
    }
}
