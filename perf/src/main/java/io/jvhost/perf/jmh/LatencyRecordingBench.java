package io.jvhost.perf.jmh;

import io.jvhost.core.metrics.QueueLatency;

import org.openjdk.jmh.annotations.Benchmark;

/**
 * What the always-on latency recording costs a poller per published batch (not per request): the
 * work-seen clock read, then at the publish a second clock read and two HdrHistogram
 * {@code SingleWriterRecorder} recordings (latency, batch size). Score: ns per batch. Compare with
 * {@code UsedRingBench} (one publish) and {@code VirtQueueBench} (per chain); measured in
 * perf/RESULTS.md, "Latency recording".
 */
public class LatencyRecordingBench extends NanosPerOp {
    private final QueueLatency latency = new QueueLatency();

    @Benchmark
    public void workSeenAndPublished() {
        latency.workSeen();
        latency.published(1);
    }
}
