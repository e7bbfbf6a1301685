package io.jvhost.core.metrics;

import org.HdrHistogram.Histogram;
import org.HdrHistogram.Recorder;

/**
 * Per-queue latency and batch-size histograms (HdrHistogram {@link Recorder}s: wait-free,
 * allocation-free recording on the poller, interval snapshots from any thread).
 *
 * <p>Latency is from the moment the poller saw work on the queue (woken by a kick, or found new
 * available buffers while busy-polling) to the used-index publish that answered it; batch size is
 * the number of used elements one publish made visible. Off unless the JVM runs with
 * {@code -Djvhost.latency=true}: then every queue records, at two nanoTime reads per batch.
 */
public final class QueueLatency {
    /** Read once: when false the JIT folds every recording call away. */
    public static final boolean ENABLED = Boolean.getBoolean("jvhost.latency");
    private static final long MAX_NANOS = 60_000_000_000L;

    private final Recorder latency = new Recorder(1, MAX_NANOS, 2);
    private final Recorder batch = new Recorder(1, 65536, 2);
    private Histogram latencyInterval;
    private Histogram batchInterval;
    private long workSeenNanos;

    /** The poller saw work for this queue (only the first call before a publish counts). Poller. */
    public void workSeen() {
        if (workSeenNanos == 0) {
            workSeenNanos = System.nanoTime();
        }
    }

    /** A publish made {@code elements} used elements visible. Poller. */
    public void published(int elements) {
        if (workSeenNanos != 0) {
            latency.recordValue(Math.min(MAX_NANOS, Math.max(1, System.nanoTime() - workSeenNanos)));
            workSeenNanos = 0;
        }
        batch.recordValue(Math.min(65536, Math.max(1, elements)));
    }

    /** The kick-to-publish latencies (ns) since the previous call. Any one reader thread. */
    public synchronized Histogram latencySnapshot() {
        latencyInterval = latency.getIntervalHistogram(latencyInterval);
        return latencyInterval.copy();
    }

    /** The batch sizes since the previous call. Any one reader thread. */
    public synchronized Histogram batchSnapshot() {
        batchInterval = batch.getIntervalHistogram(batchInterval);
        return batchInterval.copy();
    }

    /** One line: count, p50/p99/p99.9 latency in microseconds and mean batch, since the last call. */
    public String describe() {
        Histogram l = latencySnapshot(), b = batchSnapshot();
        if (l.getTotalCount() == 0) {
            return "no batches";
        }
        return String.format("%d batches, kick-to-publish p50 %.1f us p99 %.1f us p99.9 %.1f us, mean batch %.1f",
                l.getTotalCount(), l.getValueAtPercentile(50) / 1e3, l.getValueAtPercentile(99) / 1e3,
                l.getValueAtPercentile(99.9) / 1e3, b.getMean());
    }
}
