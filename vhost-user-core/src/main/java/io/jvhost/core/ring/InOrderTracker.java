package io.jvhost.core.ring;

/**
 * VIRTIO_F_IN_ORDER bookkeeping of a {@link VirtQueue}: the device must use buffers in the order
 * they were made available, whatever order it completes them in. Chains taken and not yet handed to
 * the ring wait here, oldest first, in a circular buffer of the queue's size; a completion that
 * overtakes an earlier chain is held until that one is completed too, then the run goes to the
 * ring in order. Kept apart from the queue so that the common, unordered path does not read
 * through it. Arrays are sized at configure (control thread); poller thread afterwards;
 * allocation-free.
 */
final class InOrderTracker {
    private int[] id = new int[0];
    private long[] length = new long[0];
    private boolean[] quiet = new boolean[0];
    private boolean[] done = new boolean[0];
    /** Per chain id: where it sits in the buffer, -1 when not taken. */
    private int[] slotOf = new int[0];
    private int head, count;

    /** Forgets every chain, for a queue of {@code size}. Control thread, at configure. */
    void reset(int size) {
        if (id.length != size) {
            id = new int[size];
            length = new long[size];
            quiet = new boolean[size];
            done = new boolean[size];
            slotOf = new int[size];
        }
        java.util.Arrays.fill(slotOf, -1);
        java.util.Arrays.fill(done, false);
        head = 0;
        count = 0;
    }

    /**
     * Chain {@code c} joins the chains waiting to be used in order; returns false (and takes
     * nothing) if its id is already there or the buffer is full: a driver out of step.
     */
    boolean taken(DescriptorChain c) {
        int chainId = c.head();
        if (slotOf[chainId] >= 0 || count == id.length) {
            return false;
        }
        int slot = wrap(head + count);
        id[slot] = chainId;
        quiet[slot] = c.error() == null && c.writableCount() == 0;
        done[slot] = false;
        slotOf[chainId] = slot;
        count++;
        return true;
    }

    /** Forgets the last {@code chains} chains taken (see {@link VirtQueue#rewind}). */
    void rewind(int chains) {
        for (int i = 0; i < chains && count > 0; i++) {
            count--;
            slotOf[id[wrap(head + count)]] = -1;
        }
    }

    /**
     * Records the completion of chain {@code chainId} and hands every chain now complete at the
     * front, oldest first, to {@code ring}. Returns false when that chain is not waiting here.
     * The oldest chain (a device that completes in order, as the receive path does) goes to the
     * ring at once, without being noted.
     */
    boolean complete(int chainId, long writtenLength, Ring ring) {
        int slot = chainId >= 0 && chainId < slotOf.length ? slotOf[chainId] : -1;
        if (slot < 0) {
            return false;
        }
        if (slot != head) {
            length[slot] = writtenLength;
            done[slot] = true;
            return true;
        }
        slotOf[chainId] = -1;
        boolean q = quiet[slot];
        head = slot + 1 == id.length ? 0 : slot + 1;
        count--;
        ring.complete(chainId, writtenLength, q);
        while (count > 0 && done[head]) { // chains that overtook it
            int h = head;
            done[h] = false;
            slotOf[id[h]] = -1;
            if (++head == id.length) {
                head = 0;
            }
            count--;
            ring.complete(id[h], length[h], quiet[h]);
        }
        return true;
    }

    private int wrap(int slot) {
        return slot < id.length ? slot : slot - id.length;
    }
}
