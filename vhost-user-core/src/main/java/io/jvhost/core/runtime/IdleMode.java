package io.jvhost.core.runtime;

/** What a poller does when its queues are empty. */
public enum IdleMode {
    /** Re-enable notifications and sleep on the kick eventfds at once: no CPU when idle. */
    EVENT,
    /** Spin on the rings with notifications off: lowest latency, one busy core per poller. */
    BUSY,
    /**
     * The default, Agrona's idea: after work, spin on the rings for {@code SPIN} (notifications
     * still off, so the guest does not kick), then yield the CPU for a while, then sleep as
     * {@link #EVENT} does; back to spinning as soon as work arrives. Busy-poll latency for traffic
     * that comes back quickly, event-mode CPU for a queue that goes quiet. The spin window
     * follows the traffic as KVM's halt polling does: it shrinks to nothing while work keeps
     * coming later than the longest window, and grows back when it comes sooner.
     */
    ADAPTIVE
}
