package io.jvhost.core.runtime;

import io.jvhost.core.ring.VirtQueue;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link AdaptiveIdle} on a clock the test moves: the adaptive window shrinks while work comes
 * later than the longest window, closes (the poller sleeps at once, as in event mode), opens again
 * when work comes back soon after the poller went to sleep, and stays as it is while it catches the
 * work (also when the poller was preempted meanwhile); busy and event mode do not change.
 */
class AdaptiveIdleTest {
    private static final VirtQueue[] NO_QUEUES = new VirtQueue[0];
    private static final long MAX = AdaptiveIdle.YIELD_UNTIL_NANOS;

    private long now = 1_000_000_000L;

    /** Goes idle (as many spins as the window allows, until it says sleep), then work arrives {@code idle} ns after going idle. */
    private int idleSpellThenWork(AdaptiveIdle a, long idle) {
        long start = now;
        int spins = 0;
        while (now - start < idle && a.spinOrYield(NO_QUEUES)) {
            spins++;
            now += 1_000; // each spin takes a microsecond
        }
        now = start + idle;
        a.worked();
        return spins;
    }

    @Test
    void shouldSpinTheWholeWindowAfterWorkAtFirst() {
        AdaptiveIdle a = new AdaptiveIdle(IdleMode.ADAPTIVE, () -> now);
        a.worked();
        assertEquals(MAX, a.window());
        assertEquals(MAX / 1_000, idleSpellThenWork(a, 10 * MAX), "one spin a microsecond until the window is over");
    }

    @Test
    void shouldStopSpinningWhenWorkKeepsComingLaterThanTheLongestWindow() {
        AdaptiveIdle a = new AdaptiveIdle(IdleMode.ADAPTIVE, () -> now);
        long window = MAX;
        for (int i = 0; i < 5 && window > 0; i++) {
            idleSpellThenWork(a, 3 * MAX); // a TCG guest's next TCP segment, 300 us later
            assertTrue(a.window() < window, "each long idle spell shrinks the window: " + a.window());
            window = a.window();
        }
        assertEquals(0, a.window(), "no window left after a few");
        assertEquals(0, idleSpellThenWork(a, 3 * MAX), "the poller sleeps at once, as in event mode");
    }

    @Test
    void shouldOpenTheWindowAgainWhenWorkComesBackSoonAfterThePollerSlept() {
        AdaptiveIdle a = new AdaptiveIdle(IdleMode.ADAPTIVE, () -> now);
        for (int i = 0; i < 10; i++) {
            idleSpellThenWork(a, 3 * MAX);
        }
        assertEquals(0, a.window());
        idleSpellThenWork(a, MAX / 2); // slept, woken by a kick 50 us later: spinning would have caught it
        assertEquals(AdaptiveIdle.GROW_START_NANOS, a.window());
        for (int i = 0; i < 10; i++) {
            idleSpellThenWork(a, MAX - 1_000);
        }
        assertEquals(MAX, a.window(), "grown back to the longest window, no further");
        assertTrue(idleSpellThenWork(a, MAX / 2) > 0, "and it spins again");
    }

    @Test
    void shouldKeepTheWindowWhileItCatchesTheWork() {
        AdaptiveIdle a = new AdaptiveIdle(IdleMode.ADAPTIVE, () -> now);
        for (int i = 0; i < 100; i++) {
            assertTrue(idleSpellThenWork(a, 5_000) > 0); // a guest at queue depth 1: the next request 5 us later
        }
        assertEquals(MAX, a.window());
        a.worked();
        a.worked();
        assertEquals(MAX, a.window(), "work without an idle spell in between changes nothing");
    }

    @Test
    void shouldNotShrinkTheWindowForASpellInWhichThePollerNeverSlept() {
        AdaptiveIdle a = new AdaptiveIdle(IdleMode.ADAPTIVE, () -> now);
        a.worked();
        assertTrue(a.spinOrYield(NO_QUEUES));
        now += 10_000_000; // preempted for 10 ms in the middle of its spin, then finds work at once
        a.worked();
        assertEquals(MAX, a.window());
    }

    @Test
    void shouldSpinForEverInBusyModeAndNeverInEventModeWhateverTheTraffic() {
        AdaptiveIdle busy = new AdaptiveIdle(IdleMode.BUSY, () -> now);
        AdaptiveIdle event = new AdaptiveIdle(IdleMode.EVENT, () -> now);
        for (int i = 0; i < 10; i++) {
            idleSpellThenWork(busy, 3 * MAX);
            idleSpellThenWork(event, 3 * MAX);
        }
        now += 100 * MAX;
        assertTrue(busy.spinOrYield(NO_QUEUES));
        assertFalse(event.spinOrYield(NO_QUEUES));
    }

    @Test
    void shouldSleepAtOnceInAdaptiveModeWhileAQueueWhoseWorkOtherThreadsMakeRunsButStillSpinInBusyMode() {
        AdaptiveIdle adaptive = new AdaptiveIdle(IdleMode.ADAPTIVE, () -> now);
        AdaptiveIdle busy = new AdaptiveIdle(IdleMode.BUSY, () -> now);
        adaptive.worked();
        adaptive.serves(0, false);
        adaptive.serves(3, true);
        busy.serves(3, true);

        assertFalse(adaptive.spinOrYield(NO_QUEUES), "librbd's threads need the CPU: no spin, no yield");
        assertTrue(busy.spinOrYield(NO_QUEUES), "busy-poll was asked for: it spins");
        now += 1_000;
        adaptive.worked();
        assertEquals(MAX, adaptive.window(), "the window is left as it was");
        adaptive.serves(3, false); // that queue stopped
        assertTrue(adaptive.spinOrYield(NO_QUEUES), "without such a queue the window is spun again");
    }
}
