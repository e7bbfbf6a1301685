package io.jvhost.core.runtime;

import io.jvhost.core.ring.VirtQueue;

import java.util.function.LongSupplier;

/**
 * The part of a poller's idle strategy that does not sleep: {@link IdleMode#BUSY} spins for ever,
 * {@link IdleMode#ADAPTIVE} spins for up to {@link #SPIN_NANOS} after the last work, then yields
 * until its window ends (at most {@link #YIELD_UNTIL_NANOS}), and only then lets the poller sleep
 * as {@link IdleMode#EVENT} does at once. While it spins or yields, interrupts that call
 * coalescing held back go out once due ({@link io.jvhost.core.ring.Interrupts#flush}); the poller flushes the
 * rest before it sleeps. Kept apart from {@link Poller} so the timing policy is one small piece to
 * read and tune. Poller thread only; allocation-free.
 *
 * <p>The adaptive window follows the traffic, as KVM's halt polling does ({@code halt_poll_ns}):
 * when the window passed and the poller slept, an idle spell that outlasted the longest window
 * ({@link #YIELD_UNTIL_NANOS}) halves it (below {@link #GROW_START_NANOS}: no window, the poller
 * sleeps at once), and one that ended sooner doubles it (from 0: {@link #GROW_START_NANOS}); work
 * found while spinning leaves it as it is, however long the spell looked (the poller may have been
 * preempted). Work that comes back within microseconds (a guest at queue depth 1) keeps the full
 * window; work that comes every few hundred microseconds (a TCG guest's TCP segments) stops the
 * spinning, which would only take a CPU the guest's vCPU, QEMU's main loop or the traffic's peer
 * need. Only traffic ends an idle spell: the poller's commands do not ({@link #worked}).
 */
final class AdaptiveIdle {
    /**
     * ADAPTIVE: spin at most this long after the last work, then yield until the window ends, then
     * sleep. Short, because a spin keeps the CPU from whatever else runs there: an NBD server on
     * the poller's CPU, answering the request the poller waits for, got it back only after 20 µs
     * (QD 1 over NBD: 0.86x qsd's IOPS with a 20 µs spin, 1.10-1.18x with 0-5 µs; perf/RESULTS.md
     * 2026-12-07), while work coming back within a few µs (a busy ring) is still caught spinning.
     */
    static final long SPIN_NANOS = Long.getLong("jvhost.idle.spin-nanos", 5_000),
            YIELD_UNTIL_NANOS = Long.getLong("jvhost.idle.yield-until-nanos", 100_000);
    /** The window a grown-from-nothing window starts at, and below which a shrunk one is closed. */
    static final long GROW_START_NANOS = Math.min(10_000, YIELD_UNTIL_NANOS);

    private final IdleMode mode;
    private final LongSupplier clock;
    /** When the poller last found nothing to do after work (0 while working). */
    private long idleSince;
    /** Whether the poller went to sleep in the current idle spell (its window passed). */
    private boolean slept;
    /** How long the poller spins and yields before it sleeps: 0..YIELD_UNTIL_NANOS. */
    private long window = YIELD_UNTIL_NANOS;
    /** Slots whose running queue asked to sleep when idle ({@link #serves}). */
    private final java.util.BitSet sleepy = new java.util.BitSet();

    AdaptiveIdle(IdleMode mode) {
        this(mode, System::nanoTime);
    }

    /** With {@code clock} for the time (nanoseconds, as {@link System#nanoTime()}); tests give their own. */
    AdaptiveIdle(IdleMode mode, LongSupplier clock) {
        this.mode = mode;
        this.clock = clock;
    }

    /**
     * The poller's queue in {@code slot} runs ({@code sleepWhenIdle} as its handler's
     * {@link io.jvhost.core.device.QueueHandler#sleepWhenIdle}) or stopped (false): while any
     * running queue asks to, ADAPTIVE sleeps as soon as it is idle.
     */
    void serves(int slot, boolean sleepWhenIdle) {
        sleepy.set(slot, sleepWhenIdle);
    }

    /** The spin-and-yield window now, in nanoseconds (ADAPTIVE; the other modes ignore it). */
    long window() {
        return window;
    }

    /**
     * The duty cycle moved traffic (not only commands): the next idle spell starts spinning again,
     * and the one that just ended (if any) tells the window how long to be.
     */
    void worked() {
        if (idleSince == 0) {
            return;
        }
        long idle = clock.getAsLong() - idleSince;
        idleSince = 0;
        boolean missed = slept;
        slept = false;
        if (mode != IdleMode.ADAPTIVE || !missed) {
            return; // the window caught the work (or there is none to tune)
        }
        if (idle > YIELD_UNTIL_NANOS) {
            window = window / 2 < GROW_START_NANOS ? 0 : window / 2; // spinning did not pay
        } else {
            window = window == 0 ? GROW_START_NANOS : Math.min(2 * window, YIELD_UNTIL_NANOS); // a longer one would have caught it
        }
    }

    /**
     * Spins or yields once, flushing coalesced calls that are due, and returns true; or returns
     * false when the poller should sleep now (EVENT always, ADAPTIVE once its window has passed or
     * while it serves a queue whose next work comes from threads that need this CPU,
     * {@link #serves}; the window is left as it is then).
     */
    boolean spinOrYield(VirtQueue[] queues) {
        if (mode == IdleMode.BUSY) {
            flushDue(queues);
            Thread.onSpinWait();
            return true;
        }
        if (mode != IdleMode.ADAPTIVE || !sleepy.isEmpty()) {
            return false;
        }
        long now = clock.getAsLong();
        if (idleSince == 0) {
            idleSince = now;
        }
        long idleFor = now - idleSince;
        if (idleFor >= window) {
            slept = true;
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
                q.interrupts().flush(true);
            }
        }
    }
}
