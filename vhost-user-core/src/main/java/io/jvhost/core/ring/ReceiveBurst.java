package io.jvhost.core.ring;

import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;

/**
 * Several chains taken and completed together, each one writable buffer: the common shape of a
 * receive queue's buffers (a virtio-net driver posts one buffer per frame), filled in one tight loop
 * as DPDK's enqueue does. Taking checks the descriptors of the whole burst first, the device then
 * stores only into guest buffers, and the used elements go out in one pass at the end: no
 * {@link DescriptorChain} and no per-chain bookkeeping between the guest stores, which lets the CPU
 * keep more of them in flight (what counts when the driver's CPU is far from the poller's).
 *
 * <p>Only the plain case takes the burst: no inflight or dirty log, no IN_ORDER reordering tracker,
 * nothing to resubmit, the queue not broken. Anything else, and any chain that is not exactly one
 * writable buffer of the length asked (chained, indirect, readable, too short, outside guest
 * memory, a bad id), ends the burst before it: {@link VirtQueue#next()} takes that one as usual and
 * judges it, so the burst never accepts what the parser would refuse. Reused; poller thread only.
 */
public final class ReceiveBurst {
    /** Most chains in one burst. */
    public static final int MAX = 64;

    final int[] ids = new int[MAX];
    final int[] regions = new int[MAX];
    final long[] offsets = new long[MAX];
    final int[] lengths = new int[MAX];
    private final long[] written = new long[MAX];
    private GuestMemory memory = GuestMemory.EMPTY;
    private VirtQueue queue;
    private int count;

    /**
     * Takes up to {@code max} (at most {@link #MAX}) available chains of {@code queue} that are
     * each one writable buffer, chain {@code k} holding at least {@code headroom + lengths[from + k]}
     * bytes (a header and frame {@code from + k}); returns how many, 0 when the next chain is not
     * such a one or the queue is not in the plain case. What an earlier burst took must be
     * {@link #complete completed} first ({@link IllegalStateException} otherwise).
     */
    public int take(VirtQueue queue, int max, long headroom, long[] lengths, int from) {
        if (count > 0) {
            throw new IllegalStateException(count + " chains of the last burst not completed");
        }
        this.queue = queue;
        if (!queue.burstable()) {
            return 0;
        }
        Ring ring = queue.ring();
        memory = ring.memory;
        count = ring.takeBurst(this, Math.min(Math.min(max, MAX), lengths.length - from), headroom,
                lengths, from);
        queue.tookBurst(count);
        return count;
    }

    /** Chains taken by the last {@link #take}. */
    public int count() {
        return count;
    }

    /** The mapping that holds buffer {@code i}; with {@link #offset(int)}, where to store into it. */
    public MemorySegment memory(int i) {
        return memory.segment(regions[i]);
    }

    public long offset(int i) {
        return offsets[i];
    }

    /** The length of buffer {@code i}: at least the {@code minLength} asked. */
    public int length(int i) {
        return lengths[i];
    }

    /** Buffer {@code i} will be used with {@code length} bytes written (by default 0). */
    public void written(int i, long length) {
        written[i] = length;
    }

    /**
     * Completes the first {@code n} chains of the burst (each with what {@link #written} said), in
     * the order they were taken, and gives the rest back ({@link VirtQueue#rewind}): they are taken
     * again later. Visible to the driver at {@link VirtQueue#publish()}.
     */
    public void complete(int n) {
        if (n < 0 || n > count) {
            throw new IllegalArgumentException("completing " + n + " of a burst of " + count);
        }
        if (count == 0) {
            return;
        }
        if (n < count) {
            queue.rewind(count - n);
        }
        Ring ring = queue.ring();
        long bytes = 0;
        for (int i = 0; i < n; i++) {
            long w = written[i];
            bytes += w;
            ring.complete(ids[i], w, false);
        }
        java.util.Arrays.fill(written, 0, count, 0L);
        queue.counters().bytesWritten += bytes;
        count = 0;
    }
}
