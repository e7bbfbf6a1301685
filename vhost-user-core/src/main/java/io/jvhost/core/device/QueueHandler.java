package io.jvhost.core.device;

import io.jvhost.core.ring.VirtQueue;

/**
 * Processes one virtqueue. All methods run on the queue's poller thread and must never block.
 *
 * <pre>{@code
 * int process(VirtQueue q, int budget) {
 *     int done = 0;
 *     for (DescriptorChain c; done < budget && (c = q.next()) != null; done++) {
 *         q.complete(c, handle(c));
 *     }
 *     q.publish(); // one release store, and a call only if the driver wants one
 *     return done;
 * }
 * }</pre>
 */
public interface QueueHandler {
    /** Takes at most {@code budget} chains from the queue; returns how many it took (0 = idle). */
    int process(VirtQueue queue, int budget);

    /**
     * An fd whose new input should wake the poller while this queue runs (e.g. a TAP device the
     * handler reads in {@link #process}); -1 for none. Watched edge-triggered: read it until EAGAIN
     * or expect no reminder. Asked when the queue starts.
     */
    default int wakeupFd() {
        return -1;
    }

    /** The queue starts running (first kick, enable, or after a memory table change). */
    default void started(VirtQueue queue) {}

    /** The queue stops (GET_VRING_BASE, disable, disconnect); complete or keep what is in flight. */
    default void stopped(VirtQueue queue) {}
}
