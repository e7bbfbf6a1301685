package io.jvhost.core.device;

import io.jvhost.core.metrics.MetricSink;
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

    /**
     * Whether the device takes this queue's buffers only when it has something to put in them, as a
     * NIC's receive queue does: then buffers the driver made available are no work by themselves, so
     * the poller sleeps with them posted, and the driver is asked to kick only once the device ran
     * out of them (a {@link VirtQueue#next()} that found the ring empty, or a
     * {@link VirtQueue#rewind}), as QEMU's own virtio-net asks for receive kicks. The handler's
     * {@link #wakeupFd()} or an injection's wakeup brings the next frame. Default false: every
     * available buffer is a request to serve. Asked when the queue starts.
     */
    default boolean takesBuffersOnDemand() {
        return false;
    }

    /**
     * Whether this queue's next work is made by other threads of this host that need CPU time to
     * make it (a library's I/O threads, as librbd's, and the servers they talk to): then a poller in
     * the adaptive idle mode sleeps as soon as it finds nothing to do while it serves this queue,
     * instead of spinning and yielding first, which kept its CPU busy and those threads waiting for
     * it. Busy-poll mode spins regardless. Default false. Asked when the queue starts.
     */
    default boolean sleepWhenIdle() {
        return false;
    }

    /** The queue starts running (first kick, enable, or after a memory table change). */
    default void started(VirtQueue queue) {}

    /**
     * The queue stops (GET_VRING_BASE, disable, disconnect): no more chains are taken. Complete
     * what can be completed now, without blocking; requests still in flight elsewhere (in a store)
     * are waited for through {@link #drain}.
     */
    default void stopped(VirtQueue queue) {}

    /**
     * After {@link #stopped}: completes (and publishes) what has finished since the last call and
     * returns how many requests of the stopping queue are still in flight. The poller calls it on
     * each of its duty cycles, serving its other queues in between, until it returns 0 (or a
     * timeout of 30 s passes); only then is the queue detached and GET_VRING_BASE answered, so no
     * request touches guest memory after that. Never blocks. Default: nothing is ever in flight.
     */
    default int drain(VirtQueue queue) {
        return 0;
    }

    /**
     * Reports the device's own values for this queue at a scrape (packets, drops by reason, errors,
     * requests in flight), beside the framework's (chains, bytes, kicks, notifications, latency).
     * Runs on the scraping thread, not the poller: read poller-written fields with opaque or acquire
     * reads, no locks. Default: nothing of its own.
     */
    default void metrics(MetricSink sink) {}
}
