package io.jvhost.core.ring;

import java.util.function.LongSupplier;

/**
 * Whether a queue's buffers are taken on the device's demand (a receive queue: posted buffers are
 * no work until the device has something to put in them), whether the device ran out of them, and
 * how long it then leaves the ring alone.
 *
 * <p>A device that ran out finds the next buffers only after the driver refills the ring, and the
 * driver refills it by writing the very cache lines the device would poll (a packed ring's
 * descriptors, one at a time; a split ring's index). Reading them again and again while the driver
 * writes them takes each line back from the driver's core between its stores, which slowed a
 * polling driver's refills enough to cost packed host-to-guest a sixth of its rate against DPDK's
 * virtio-user on distant CPUs (perf/RESULTS.md, 2026-12-07). So after running out the device does not look
 * for {@link #BACKOFF_NANOS}; the ring's own availability check ({@link VirtQueue#enableNotifications}),
 * which decides whether the poller may sleep, still looks at once, so a refill is never missed,
 * only taken up to that much later. Poller thread only.
 */
final class Demand {
    /** How long a device that ran out of buffers leaves the ring alone; 0 looks at every call. */
    static final long BACKOFF_NANOS = Long.getLong("jvhost.starved-backoff-nanos", 2_000);

    private final long backoffNanos;
    private final LongSupplier clock;
    private boolean onDemand;
    private boolean starved;
    /** The clock's time from which the ring is worth reading again, while starved. */
    private long lookAgainAt;

    Demand() {
        this(BACKOFF_NANOS, System::nanoTime);
    }

    /** Backing off for {@code backoffNanos} by {@code clock} (nanoseconds, as {@link System#nanoTime()}); tests give their own. */
    Demand(long backoffNanos, LongSupplier clock) {
        this.backoffNanos = backoffNanos;
        this.clock = clock;
    }

    /** A new (or re-attached) queue: taken on demand or not, and not starved. */
    void reset(boolean onDemand) {
        this.onDemand = onDemand;
        starved = false;
    }

    /** The device found no buffer: an on-demand queue is starved from now. */
    void ranOut() {
        if (onDemand) {
            starved = true;
            lookAgainAt = clock.getAsLong() + backoffNanos;
        }
    }

    /** The device gave back the last {@code chains} it took: more than none, and it ran out of them. */
    void gaveBack(int chains) {
        if (chains > 0) {
            ranOut();
        }
    }

    /** The device took a buffer. */
    void found() {
        starved = false;
    }

    /** Whether the queue is on demand and has buffers left, so that it asks the driver for no kick. */
    boolean stocked() {
        return onDemand && !starved;
    }

    /** Whether the device ran out of buffers so recently that the ring is not worth reading yet. */
    boolean backingOff() {
        return starved && backoffNanos > 0 && clock.getAsLong() - lookAgainAt < 0;
    }
}
