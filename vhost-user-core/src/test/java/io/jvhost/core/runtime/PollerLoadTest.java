package io.jvhost.core.runtime;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@link PollerLoad} on a clock the test moves, driven as the poller's loop drives it: duty cycles
 * that move traffic make a busy spell, the idling after an empty one an idle spell; readers see the
 * open spell too; every nanosecond since the start lands in exactly one of the two; and a busy
 * spell, however long, never reads the clock.
 */
class PollerLoadTest {
    private long now = 5_000_000_000L;
    private int clockReads;

    private PollerLoad started() {
        PollerLoad load = new PollerLoad(() -> {
            clockReads++;
            return now;
        });
        load.start();
        return load;
    }

    /** What the poller does for a cycle that found nothing: idles for {@code nanos}. */
    private void emptyCycle(PollerLoad load, long nanos) {
        load.idleBegins();
        now += nanos;
        load.idleEnded();
    }

    @Test
    void shouldCountTheCyclesThatMovedTrafficAsBusyAndTheIdlingAsIdle() {
        PollerLoad load = started();
        now += 700; // the first cycle, which moved traffic
        load.moved();
        now += 300;
        load.moved();
        emptyCycle(load, 50_000); // e.g. asleep until a kick
        now += 200;
        load.moved();
        now += 100; // the busy spell is still open: readers count it so far
        assertEquals(1_000 + 300, load.busyNanos(), "two busy cycles, the open spell so far");
        assertEquals(50_000, load.idleNanos());
    }

    @Test
    void shouldShowTheBusyTimeOfAPollerThatNeverIdles() {
        PollerLoad load = started();
        load.moved();
        int reads = clockReads;
        for (int i = 0; i < 10_000; i++) {
            now += 1_000;
            load.moved();
        }
        assertEquals(reads, clockReads, "a busy spell reads no clock");
        assertEquals(10_000_000, load.busyNanos());
        assertEquals(0, load.idleNanos());
    }

    @Test
    void shouldAccountEveryNanosecondSinceTheStartOnce() {
        long start = now;
        PollerLoad load = started();
        for (int i = 0; i < 1_000; i++) {
            if (i % 3 == 0) {
                emptyCycle(load, 17 + i % 5);
            } else {
                now += 40 + i % 7;
                load.moved();
            }
            assertEquals(now - start, load.busyNanos() + load.idleNanos(), "after cycle " + i);
        }
    }
}
