package io.jvhost.core.metrics;

import org.HdrHistogram.Histogram;
import org.HdrHistogram.HistogramIterationValue;
import org.HdrHistogram.SingleWriterRecorder;

/**
 * Per-queue latency and batch-size histograms (HdrHistogram {@link SingleWriterRecorder}s:
 * wait-free, allocation-free recording by the queue's one poller, interval snapshots from any
 * thread).
 *
 * <p>Latency is from the moment the poller saw work on the queue (woken by a kick, or found new
 * available buffers while busy-polling) to the used-index publish that answered it; batch size is
 * the number of used elements one publish made visible. Off unless the JVM runs with
 * {@code -Djvhost.latency=true} (the CLI's {@code --latency} and {@code --metrics} set it): then
 * every queue records, at two nanoTime reads and two recordings per published batch (~90 ns, not
 * per request). Not on by default because with it the allocation test saw a few hundred bytes
 * allocated once on a poller during measurement (see perf/RESULTS.md, "Latency inside jvhost").
 *
 * <p>Readers: {@link #snapshot()} (metrics, cumulative since start) and {@link #describe()} (the
 * console line, since the previous line) each see every recorded value; one does not take values
 * from the other.
 */
public final class QueueLatency {
    /** Read once: when false the JIT folds every recording call away. */
    public static final boolean ENABLED = Boolean.getBoolean("jvhost.latency");
    private static final long MAX_NANOS = 60_000_000_000L;

    private final SingleWriterRecorder latency = new SingleWriterRecorder(1, MAX_NANOS, 2);
    private final SingleWriterRecorder batch = new SingleWriterRecorder(1, 65536, 2);
    private long workSeenNanos;

    // Reader side, under this object's lock.
    private Histogram latencyInterval;
    private Histogram batchInterval;
    private final Histogram latencyTotal = new Histogram(1, MAX_NANOS, 2);
    private long latencySumNanos;
    private final Histogram latencySinceLine = new Histogram(1, MAX_NANOS, 2);
    private final Histogram batchSinceLine = new Histogram(1, 65536, 2);

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

    /** Moves what the poller recorded since the last call into the readers' histograms. */
    private void drain() {
        latencyInterval = latency.getIntervalHistogram(latencyInterval);
        batchInterval = batch.getIntervalHistogram(batchInterval);
        if (latencyInterval.getTotalCount() != 0) {
            for (HistogramIterationValue v : latencyInterval.recordedValues()) {
                latencySumNanos += v.getCountAtValueIteratedTo() * latencyInterval.medianEquivalentValue(v.getValueIteratedTo());
            }
            latencyTotal.add(latencyInterval);
            latencySinceLine.add(latencyInterval);
        }
        batchSinceLine.add(batchInterval);
    }

    /** Every kick-to-publish latency since the queue was made, in {@code boundsNanos} buckets. Any thread. */
    public synchronized LatencySnapshot snapshot(long[] boundsNanos) {
        drain();
        long[] counts = new long[boundsNanos.length + 1];
        long below = 0;
        for (int i = 0; i < boundsNanos.length; i++) {
            long upTo = latencyTotal.getCountBetweenValues(0, boundsNanos[i]);
            counts[i] = upTo - below;
            below = upTo;
        }
        long total = latencyTotal.getTotalCount();
        counts[boundsNanos.length] = total - below;
        return new LatencySnapshot(total, latencySumNanos, boundsNanos.clone(), counts);
    }

    /** As {@link #snapshot(long[])} with {@link LatencySnapshot#DEFAULT_BOUNDS_NANOS}. */
    public LatencySnapshot snapshot() {
        return snapshot(LatencySnapshot.DEFAULT_BOUNDS_NANOS);
    }

    /** The kick-to-publish latencies (ns) since the previous call. Any one reader thread. */
    public synchronized Histogram latencySnapshot() {
        drain();
        Histogram h = latencySinceLine.copy();
        latencySinceLine.reset();
        return h;
    }

    /** The batch sizes since the previous call. Any one reader thread. */
    public synchronized Histogram batchSnapshot() {
        drain();
        Histogram h = batchSinceLine.copy();
        batchSinceLine.reset();
        return h;
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
