package io.jvhost.core.runtime;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.function.LongSupplier;

/**
 * Where a poller's time goes, as SPDK's reactors count busy and idle TSC: every duty cycle's wall
 * time counts as busy when the cycle moved traffic (chains or frames) and as idle otherwise,
 * including the spinning, yielding or sleeping that follows an empty cycle. A busy-polling
 * poller's CPU time is always its whole wall time; its busy time per packet is what serving a
 * packet costs, and its idle share says whether it waits for its peer (a frontend that cannot keep
 * up) rather than the other way round.
 *
 * <p>One clock read per duty cycle (a vDSO call of about 20 ns, against a cycle that moves up to
 * a budget of chains per queue). Written by the poller thread only (opaque stores: no fence on the
 * data path), read by any thread.
 */
public final class PollerLoad {
    private static final VarHandle BUSY, IDLE;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            BUSY = l.findVarHandle(PollerLoad.class, "busy", long.class);
            IDLE = l.findVarHandle(PollerLoad.class, "idle", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final LongSupplier clock;
    @SuppressWarnings("unused") // through BUSY and IDLE
    private long busy, idle;
    /** When the current duty cycle began. Poller thread. */
    private long cycleStart;

    PollerLoad() {
        this(System::nanoTime);
    }

    /** With {@code clock} for the time (nanoseconds, as {@link System#nanoTime()}); tests give their own. */
    PollerLoad(LongSupplier clock) {
        this.clock = clock;
    }

    /** The poller's first duty cycle begins now. Poller thread. */
    void start() {
        cycleStart = clock.getAsLong();
    }

    /** A duty cycle (and the idling after it, if it found nothing) ended now. Poller thread. */
    void cycleEnded(boolean traffic) {
        long now = clock.getAsLong();
        long spent = now - cycleStart;
        cycleStart = now;
        if (traffic) {
            BUSY.setOpaque(this, (long) BUSY.getOpaque(this) + spent);
        } else {
            IDLE.setOpaque(this, (long) IDLE.getOpaque(this) + spent);
        }
    }

    /** Nanoseconds of duty cycles that moved traffic, so far. Any thread. */
    public long busyNanos() {
        return (long) BUSY.getOpaque(this);
    }

    /** Nanoseconds of duty cycles that moved nothing and of idling after them, so far. Any thread. */
    public long idleNanos() {
        return (long) IDLE.getOpaque(this);
    }
}
