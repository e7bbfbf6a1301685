package io.jvhost.perf;

import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link CpuRoundTrip}: a cache line handed between two pinned CPUs takes tens to hundreds of
 * nanoseconds a round trip (what the benchmarks print before each run, with each CPU's
 * {@link CpuSpeed}), and a placement it cannot measure is said so instead of a number.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class CpuRoundTripTest {
    @Test
    void shouldMeasureARoundTripBetweenTwoCpusInNanoseconds() throws InterruptedException {
        double ns = CpuRoundTrip.measure(0, 1);
        assertTrue(ns > 5 && ns < 100_000, "a cache line's round trip between CPUs 0 and 1: " + ns + " ns");
    }

    @Test
    void shouldKeepEachRunsRoundTripsBeforeAndAfterInRunOrderForTheReport() throws InterruptedException {
        CpuRoundTrip placement = new CpuRoundTrip(0, 1);
        assertTrue(placement.sample().matches("CPUs 0-1 round trip \\d+ ns, copy \\d+\\.\\d\\d/\\d+\\.\\d\\d ns/line"));
        assertTrue(placement.after().matches(", \\d+ ns after(: moved during the run)?"));
        placement.sample();
        String copy = " \\(\\d+\\.\\d\\d/\\d+\\.\\d\\d\\)";
        assertTrue(placement.summary().matches("\\[\\d+/\\d+" + copy + ", \\d+" + copy + "\\] ns, in run order, before/after each run .*"),
                placement.summary());
    }

    @Test
    void shouldMeasureEachCpusCopySpeedInNanosecondsPerLineAndNothingOnACpuItMayNotUse() throws InterruptedException {
        double ns = CpuSpeed.measure(0);
        assertTrue(ns > 0.01 && ns < 100, "copying 256 KiB on CPU 0: " + ns + " ns per 64-byte line");
        assertTrue(Double.isNaN(CpuSpeed.measure(1023)));
    }

    @Test
    void shouldCallTwoRoundTripsDifferentPlacementsOnlyWhenOneIsOverTwiceTheOther() {
        assertTrue(CpuRoundTrip.moved(80, 430));
        assertTrue(CpuRoundTrip.moved(430, 80));
        assertFalse(CpuRoundTrip.moved(80, 150));
        assertFalse(CpuRoundTrip.moved(410, 480));
    }

    @Test
    void shouldSayNotMeasuredForACpuThisProcessMayNotUse() throws InterruptedException {
        CpuRoundTrip placement = new CpuRoundTrip(0, 1023);
        assertEquals("CPUs 0-1023 round trip not measured", placement.sample(), "nor either CPU's copy speed");
        assertEquals("", placement.after(), "nothing to add when the run's placement was not measured");
        assertEquals("not measured", placement.summary());
    }
}
