package io.jvhost.core.metrics;

import java.util.Arrays;

/**
 * A queue's kick-to-used latency since the backend started, cumulative (every scrape sees at least
 * what the previous one saw), in fixed buckets: {@code counts[i]} latencies fell in
 * ({@code upperBoundsNanos[i-1]}, {@code upperBoundsNanos[i]}], the last bucket is unbounded
 * ({@code counts.length == upperBoundsNanos.length + 1}). Bucket edges are within the recorder's
 * resolution (under 0.8%, {@link LatencyRecorder}).
 *
 * @param sumNanos the exact sum of the recorded latencies
 */
public record LatencySnapshot(long count, long sumNanos, long[] upperBoundsNanos, long[] counts) {
    /** 1 us to 10 s, 1-2.5-5 steps: the range from a busy-polled RAM disk to a stalled network store. */
    public static final long[] DEFAULT_BOUNDS_NANOS = {
        1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, 100_000_000, 250_000_000, 500_000_000,
        1_000_000_000, 2_500_000_000L, 5_000_000_000L, 10_000_000_000L};

    public static final LatencySnapshot EMPTY =
            new LatencySnapshot(0, 0, DEFAULT_BOUNDS_NANOS, new long[DEFAULT_BOUNDS_NANOS.length + 1]);

    @Override
    public String toString() {
        return "LatencySnapshot[count=" + count + ", sumNanos=" + sumNanos + ", counts=" + Arrays.toString(counts) + "]";
    }
}
