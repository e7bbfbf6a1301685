package io.jvhost.perf.jmh;

import io.jvhost.core.metrics.LatencyRecorder;
import io.jvhost.core.metrics.QueueLatency;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Param;

/**
 * What latency recording (always on; {@code -Djvhost.latency=false} turns it off) costs a poller
 * per published batch (not per request): the work-seen clock read, then at the publish a second
 * clock read and two {@link LatencyRecorder} bucket increments (latency, batch size). Score: ns per
 * batch. Back to back, batches come fast: every batch of 1 is timed (54.5 ns, 2026-12-07), one
 * batch of 32 in 16 (4.4 ns). Compare with {@code UsedRingBench} (one publish) and
 * {@code VirtQueueBench} (per chain); measured in perf/RESULTS.md, "Latency inside jvhost".
 */
public class LatencyRecordingBench extends NanosPerOp {
    private final LatencyRecorder latency = new QueueLatency().recorder();

    /** Used elements per batch. */
    @Param({"1", "32"})
    public int batch;

    @Benchmark
    public void workSeenAndPublished() {
        latency.workSeen();
        latency.published(batch);
    }
}
