package io.jvhost.core.ring;

import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;

/**
 * Several chains taken and completed together, each exactly one buffer: the common shape of a
 * virtio-net driver's buffers (one writable buffer per receive frame, one readable buffer with
 * header and frame per transmitted one), handled in one tight loop as DPDK's enqueue and dequeue
 * do. Taking checks the descriptors of the whole burst first, the device then touches only guest
 * buffers, and the used elements go out in one pass at the end: no {@link DescriptorChain} and no
 * per-chain bookkeeping between the guest accesses, which lets the CPU keep more of them in flight
 * (what counts when the driver's CPU is far from the poller's).
 *
 * <p>Only the plain case takes a burst: no inflight or dirty log, no IN_ORDER reordering tracker,
 * nothing to resubmit, the queue not broken. Anything else, and any chain that is not exactly one
 * buffer of the direction and length asked (chained, indirect, the other direction, too short,
 * outside guest memory, a bad id), ends the burst before it: {@link VirtQueue#next()} takes that
 * one as usual and judges it, so a burst never accepts what the parser would refuse. Reused;
 * poller thread only.
 */
public final class BufferBurst {
    /** Most chains in one burst. */
    public static final int MAX = 64;
    private static final long[] NONE = new long[MAX];

    final int[] ids = new int[MAX];
    final int[] regions = new int[MAX];
    final long[] offsets = new long[MAX];
    /** Per chain taken: its one buffer's length. */
    final int[] sizes = new int[MAX];
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
    public int takeWritable(VirtQueue queue, int max, long headroom, long[] lengths, int from) {
        return take(queue, Math.min(max, lengths.length - from), headroom, lengths, from, true);
    }

    /**
     * Takes up to {@code max} (at most {@link #MAX}) available chains of {@code queue} that are
     * each one readable buffer of at least {@code minLength} bytes (a transmitted frame with its
     * header); as {@link #takeWritable} otherwise.
     */
    public int takeReadable(VirtQueue queue, int max, long minLength) {
        return take(queue, max, minLength, NONE, 0, false);
    }

    private int take(VirtQueue queue, int max, long headroom, long[] lengths, int from, boolean writable) {
        if (count > 0) {
            throw new IllegalStateException(count + " chains of the last burst not completed");
        }
        this.queue = queue;
        if (!queue.burstable()) {
            return 0;
        }
        Ring ring = queue.ring();
        memory = ring.memory;
        int n = ring.takeBurst(this, Math.min(max, MAX), headroom, lengths, from, writable);
        long read = 0; // bytes the device reads: a readable burst's whole buffers
        if (!writable) {
            for (int i = 0; i < n; i++) {
                read += sizes[i];
            }
        }
        queue.tookBurst(n, read);
        count = n;
        return n;
    }

    /**
     * Records the one buffer of chain {@code id} as entry {@code k}, for the rings' takeBurst;
     * false, recording nothing, when it is empty or not inside one region of {@code memory}.
     */
    boolean put(int k, int id, long addr, int len, GuestMemory memory) {
        int r = len > 0 ? memory.regionOf(addr, len) : -1;
        if (r < 0) {
            return false;
        }
        ids[k] = id;
        regions[k] = r;
        offsets[k] = addr - memory.gpaBase(r);
        sizes[k] = len;
        return true;
    }

    /** Chains taken by the last take. */
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

    /** The length of buffer {@code i}: at least what was asked. */
    public int length(int i) {
        return sizes[i];
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
            queue.ring().giveBack(ids, n, count - n);
            queue.tookBurst(n - count, 0);
        }
        long bytes = 0;
        for (int i = 0; i < n; i++) {
            bytes += written[i];
        }
        // In order (not tracked, or there would be no burst), one used element may stand for a run of them.
        queue.ring().completeBurst(ids, written, n, queue.isInOrder());
        java.util.Arrays.fill(written, 0, count, 0L);
        queue.counters().bytesWritten += bytes;
        count = 0;
    }

    /**
     * Makes the used elements completed so far (this burst's and any before it) visible to a
     * driver that polls the ring, ahead of the {@link VirtQueue#publish} that ends the batch, which
     * still fences and decides on the interrupt for all of them: e.g. the first frames of an
     * answer, so the guest starts on them while the rest are written. Poller.
     */
    public void expose() {
        if (queue != null && !queue.isBroken()) {
            queue.ring().exposeUsed();
        }
    }
}
