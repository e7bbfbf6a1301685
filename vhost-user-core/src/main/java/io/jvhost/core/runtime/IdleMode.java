package io.jvhost.core.runtime;

/** What a poller does when its queues are empty. */
public enum IdleMode {
    /** Re-enable notifications and sleep on the kick eventfds: no CPU when idle (the default). */
    EVENT,
    /** Spin on the rings with notifications off: lowest latency, one busy core per poller. */
    BUSY
}
