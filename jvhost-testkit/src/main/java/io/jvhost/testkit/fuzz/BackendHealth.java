package io.jvhost.testkit.fuzz;

import io.jvhost.core.runtime.Backend;

/**
 * The failure counters of a backend at one moment, to check after a fuzz input that nothing went
 * wrong meanwhile: no exception escaped a poller's handler or duty cycle (each would be an
 * unhandled input, e.g. an access outside a guest-memory segment), no message failed with an
 * unexpected exception, and every poller thread still runs.
 */
public record BackendHealth(Backend backend, long pollerFailures, long controlFailures) {
    public static BackendHealth of(Backend backend) {
        return new BackendHealth(backend, backend.pollerFailures(), backend.controlFailures());
    }

    /** Throws unless the backend is as healthy as at {@link #of}. */
    public void check() {
        if (!backend.pollersAlive()) {
            throw new AssertionError("a poller thread died");
        }
        long p = backend.pollerFailures() - pollerFailures;
        if (p != 0) {
            throw new AssertionError(p + " exceptions escaped a poller's handler or duty cycle (see the log)");
        }
        long c = backend.controlFailures() - controlFailures;
        if (c != 0) {
            throw new AssertionError(c + " messages failed with an unexpected exception (see the log)");
        }
    }
}
