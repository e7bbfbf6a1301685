package io.jvhost.core.runtime;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@link PollerLoad} on a clock the test moves: a duty cycle that moved traffic adds its whole time
 * to busy, one that moved nothing adds its time and the idling after it to idle, and every
 * nanosecond since the start lands in exactly one of the two.
 */
class PollerLoadTest {
    private long now = 5_000_000_000L;

    @Test
    void shouldCountCyclesThatMovedTrafficAsBusyAndTheRestAsIdle() {
        PollerLoad load = new PollerLoad(() -> now);
        load.start();
        now += 700;
        load.cycleEnded(true);
        now += 300;
        load.cycleEnded(true);
        now += 50_000; // an empty cycle, then a sleep until a kick
        load.cycleEnded(false);
        now += 200;
        load.cycleEnded(true);
        assertEquals(1_200, load.busyNanos());
        assertEquals(50_000, load.idleNanos());
    }

    @Test
    void shouldAccountEveryNanosecondSinceTheStartOnce() {
        PollerLoad load = new PollerLoad(() -> now);
        long start = now;
        load.start();
        for (int i = 0; i < 1_000; i++) {
            now += 17 + i % 5;
            load.cycleEnded(i % 3 == 0);
        }
        assertEquals(now - start, load.busyNanos() + load.idleNanos());
    }
}
