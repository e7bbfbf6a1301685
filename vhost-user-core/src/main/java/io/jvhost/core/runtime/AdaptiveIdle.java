package io.jvhost.core.runtime;

import io.jvhost.core.ring.VirtQueue;

/**
 * The part of a poller's idle strategy that does not sleep: {@link IdleMode#BUSY} spins for ever,
 * {@link IdleMode#ADAPTIVE} spins for {@link #SPIN_NANOS} after the last work, then yields until
 * {@link #YIELD_UNTIL_NANOS}, and only then lets the poller sleep as {@link IdleMode#EVENT} does at
 * once. While it spins or yields, interrupts that call coalescing held back go out once due
 * ({@link VirtQueue#flushCoalesced}); the poller flushes the rest before it sleeps. Kept apart from
 * {@link Poller} so the timing policy is one small piece to read and tune. Poller thread only;
 * allocation-free.
 */
final class AdaptiveIdle {
    /** ADAPTIVE: spin this long after the last work, then yield until YIELD_UNTIL, then sleep. */
    static final long SPIN_NANOS = Long.getLong("jvhost.idle.spin-nanos", 20_000),
            YIELD_UNTIL_NANOS = Long.getLong("jvhost.idle.yield-until-nanos", 100_000);

    private final IdleMode mode;
    /** When the poller last found nothing to do after work (0 while working). */
    private long idleSince;

    AdaptiveIdle(IdleMode mode) {
        this.mode = mode;
    }

    /** The duty cycle did work: the next idle spell starts spinning again. */
    void worked() {
        idleSince = 0;
    }

    /**
     * Spins or yields once, flushing coalesced calls that are due, and returns true; or returns
     * false when the poller should sleep now (EVENT always, ADAPTIVE after the yield period).
     */
    boolean spinOrYield(VirtQueue[] queues) {
        if (mode == IdleMode.BUSY) {
            flushDue(queues);
            Thread.onSpinWait();
            return true;
        }
        if (mode != IdleMode.ADAPTIVE) {
            return false;
        }
        long now = System.nanoTime();
        if (idleSince == 0) {
            idleSince = now;
        }
        long idleFor = now - idleSince;
        if (idleFor >= YIELD_UNTIL_NANOS) {
            return false;
        }
        flushDue(queues);
        if (idleFor < SPIN_NANOS) {
            Thread.onSpinWait();
        } else {
            Thread.yield();
        }
        return true;
    }

    private static void flushDue(VirtQueue[] queues) {
        for (VirtQueue q : queues) {
            if (q != null) {
                q.flushCoalesced(true);
            }
        }
    }
}
