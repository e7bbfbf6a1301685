package io.jvhost.core.metrics;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

import org.HdrHistogram.Histogram;

/**
 * Per-queue latency and batch-size histograms, as readers see them. The queue's poller records into
 * its {@link #recorder()} (plain stores, no allocation); the readers here take opaque reads of its
 * counts, from any thread.
 *
 * <p>Latency is from the moment the poller saw work on the queue (woken by a kick, or found new
 * available buffers while busy-polling) to the used-index publish that answered it; batch size is
 * the number of used elements one publish made visible. Every queue records, always: two nanoTime
 * reads and two array increments per timed batch, not per request: every batch, but one in 16
 * while batches of 16 or more elements come faster than every 10 us (the sizes of all of them
 * counted: {@link LatencyRecorder}). {@code -Djvhost.latency=false} turns it off.
 *
 * <p>Readers: {@link #snapshot()} (metrics, cumulative since start) and {@link #describe()} (the
 * console line, since the previous line) each see every recorded value; one does not take values
 * from the other.
 */
public final class QueueLatency {
    /** Read once: when false the JIT folds every recording call away. */
    public static final boolean ENABLED = !"false".equals(System.getProperty("jvhost.latency"));
    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle SUM;

    static {
        try {
            SUM = MethodHandles.lookup().findVarHandle(LatencyRecorder.class, "latencySumNanos", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final LatencyRecorder recorder = new LatencyRecorder();
    // Reader side of the console line, under this object's lock: the counts at the previous line.
    private final long[] latencyAtLine = new long[recorder.latencyCounts().length];
    private final long[] batchAtLine = new long[recorder.batchCounts().length];

    /** Where the queue's poller records. */
    public LatencyRecorder recorder() {
        return recorder;
    }

    /** Every kick-to-publish latency since the queue was made, in {@code boundsNanos} (ascending) buckets. Any thread. */
    public LatencySnapshot snapshot(long[] boundsNanos) {
        long[] live = recorder.latencyCounts();
        long[] counts = new long[boundsNanos.length + 1];
        long total = 0;
        int bound = 0;
        for (int i = 0; i < live.length; i++) {
            long c = (long) LONGS.getOpaque(live, i);
            if (c != 0) {
                // As HdrHistogram counts up to a value: the bucket holding the bound is at or below it.
                while (bound < boundsNanos.length && i > LatencyRecorder.index(boundsNanos[bound])) {
                    bound++;
                }
                counts[bound] += c;
                total += c;
            }
        }
        return new LatencySnapshot(total, (long) SUM.getOpaque(recorder), boundsNanos.clone(), counts);
    }

    /** As {@link #snapshot(long[])} with {@link LatencySnapshot#DEFAULT_BOUNDS_NANOS}. */
    public LatencySnapshot snapshot() {
        return snapshot(LatencySnapshot.DEFAULT_BOUNDS_NANOS);
    }

    /** The kick-to-publish latencies (ns) since the previous call. Any one reader thread. */
    public synchronized Histogram latencySnapshot() {
        return since(recorder.latencyCounts(), latencyAtLine);
    }

    /** The batch sizes since the previous call. Any one reader thread. */
    public synchronized Histogram batchSnapshot() {
        return since(recorder.batchCounts(), batchAtLine);
    }

    /** What {@code live} counted since {@code before}, each bucket at its highest value; moves {@code before} up. */
    private static Histogram since(long[] live, long[] before) {
        Histogram h = new Histogram(1, LatencyRecorder.highestValue(live.length - 1), 2);
        for (int i = 0; i < live.length; i++) {
            long c = (long) LONGS.getOpaque(live, i);
            if (c != before[i]) {
                h.recordValueWithCount(LatencyRecorder.highestValue(i), c - before[i]);
                before[i] = c;
            }
        }
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
