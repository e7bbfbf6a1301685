package io.jvhost.perf;

import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link CpuRoundTrip}: a cache line handed between two pinned CPUs takes tens to hundreds of
 * nanoseconds a round trip (what the benchmarks print before each run), and a placement it cannot
 * measure is said so instead of a number.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class CpuRoundTripTest {
    @Test
    void shouldMeasureARoundTripBetweenTwoCpusInNanoseconds() throws InterruptedException {
        double ns = CpuRoundTrip.measure(0, 1);
        assertTrue(ns > 5 && ns < 100_000, "a cache line's round trip between CPUs 0 and 1: " + ns + " ns");
    }

    @Test
    void shouldKeepEachSampleInRunOrderForTheReport() throws InterruptedException {
        CpuRoundTrip placement = new CpuRoundTrip(0, 1);
        assertTrue(placement.sample().matches("CPUs 0-1 round trip \\d+ ns"));
        placement.sample();
        assertTrue(placement.summary().matches("\\[\\d+, \\d+\\] ns, in run order .*"), placement.summary());
    }

    @Test
    void shouldSayNotMeasuredForACpuThisProcessMayNotUse() throws InterruptedException {
        CpuRoundTrip placement = new CpuRoundTrip(0, 1023);
        assertEquals("CPUs 0-1023 round trip not measured", placement.sample());
        assertEquals("not measured", placement.summary());
    }
}
