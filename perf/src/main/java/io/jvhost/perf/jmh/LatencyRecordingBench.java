package io.jvhost.perf.jmh;

import io.jvhost.core.metrics.LatencyRecorder;
import io.jvhost.core.metrics.QueueLatency;

import org.openjdk.jmh.annotations.Benchmark;

/**
 * What latency recording (always on; {@code -Djvhost.latency=false} turns it off) costs a poller
 * per published batch (not per request): the work-seen clock read, then at the publish a second
 * clock read and two {@link LatencyRecorder} bucket increments (latency, batch size). Score: ns per
 * batch. Compare with {@code UsedRingBench} (one publish) and {@code VirtQueueBench} (per chain);
 * measured in perf/RESULTS.md, "Latency inside jvhost".
 */
public class LatencyRecordingBench extends NanosPerOp {
    private final LatencyRecorder latency = new QueueLatency().recorder();

    @Benchmark
    public void workSeenAndPublished() {
        latency.workSeen();
        latency.published(1);
    }
}
