package io.jvhost.core.metrics;

import java.util.function.LongSupplier;

/**
 * The poller's half of {@link QueueLatency}: kick-to-publish latencies and batch sizes counted in
 * log-linear buckets (exact below 256, then 128 per power of two, so a bucket is under 0.8% wide),
 * in plain {@code long[]}s that the queue's poller alone writes and readers read opaque, as they
 * read the queue counters. Wait-free, allocation-free, no locks or atomics.
 *
 * <p>On purpose this class calls nothing but its clock ({@link System#nanoTime()}) and has no String constant
 * (LatencyRecorderTest checks its constant pool): when a method gets hot enough for C2, HotSpot's
 * compile request ({@code CompileBroker::compile_method}) runs on the calling thread and first
 * interns every not yet resolved String constant of the method's class. Code run once per batch
 * reaches that point late, after warm-up; with HdrHistogram's recorders on this path the poller
 * interned HdrHistogram's exception messages in the middle of measurement (perf/RESULTS.md,
 * "Why the poller allocated").
 *
 * <p>A busy queue times a sample of its batches: the two clock reads are most of what recording
 * costs ({@code LatencyRecordingBench}: 54.5 ns per batch when every batch was timed, 4.4 with one
 * in 16; a 64-byte loopback round publishes two batches per 32 frames, so ~3 ns per frame). When
 * the batches timed last came less than {@link #FAST_NANOS} apart on average and the last one made
 * at least {@link #SAMPLE} elements visible, only one in {@link #SAMPLE} is timed until that
 * changes (seen at the next timed one, so within 16 batches); every batch's size is still counted.
 * Batches of fewer elements (requests answered one by one, however fast) and batches below 100 000
 * a second (a QD1 disk, a ping) are each timed.
 *
 * <p>Poller thread only, but for the package-private accessors readers use.
 */
public final class LatencyRecorder {
    /** Latencies above this (60 s) count as this. */
    static final long MAX_NANOS = 60_000_000_000L;
    /** Batches above this count as this. */
    static final int MAX_BATCH = 65536;
    private static final int SUB_BUCKET_BITS = 7;
    /** Big batches closer than this on average are sampled. */
    static final long FAST_NANOS = 10_000;
    /** One batch in this many is timed while batches of at least this many elements come fast. */
    static final int SAMPLE = 16;

    private final long[] latencyCounts = new long[index(MAX_NANOS) + 1];
    private final long[] batchCounts = new long[index(MAX_BATCH) + 1];
    /** Exact sum of the recorded latencies; read opaque by {@link QueueLatency}. */
    long latencySumNanos;
    private final LongSupplier clock;
    private long workSeenNanos;
    /** When the last timed batch was published. */
    private long timedAt;
    /** Batches published since the last timed one. */
    private long untimed;
    /** Time one batch in this many: 1, or {@link #SAMPLE} while batches come fast. */
    private int every = 1;

    public LatencyRecorder() {
        this(System::nanoTime);
    }

    /** With {@code clock} for the time (nanoseconds, as {@link System#nanoTime()}); tests give their own. */
    LatencyRecorder(LongSupplier clock) {
        this.clock = clock;
    }

    /** The poller saw work for this queue (only the first call before a publish counts). Poller. */
    public void workSeen() {
        if (workSeenNanos == 0 && untimed >= every - 1) {
            workSeenNanos = clock.getAsLong();
        }
    }

    /** A publish made {@code elements} used elements visible. Poller. */
    public void published(int elements) {
        long seen = workSeenNanos;
        if (seen != 0) {
            long now = clock.getAsLong();
            long nanos = now - seen;
            nanos = nanos < 0 ? 0 : nanos > MAX_NANOS ? MAX_NANOS : nanos;
            latencyCounts[index(nanos)]++;
            latencySumNanos += nanos;
            workSeenNanos = 0;
            every = elements >= SAMPLE && timedAt != 0 && now - timedAt < FAST_NANOS * (untimed + 1) ? SAMPLE : 1;
            timedAt = now;
            untimed = 0;
        } else {
            untimed++;
        }
        batchCounts[index(elements < 0 ? 0 : elements > MAX_BATCH ? MAX_BATCH : elements)]++;
    }

    /** Latency counts by bucket, live: read elements opaque. */
    long[] latencyCounts() {
        return latencyCounts;
    }

    /** Batch-size counts by bucket, live: read elements opaque. */
    long[] batchCounts() {
        return batchCounts;
    }

    /** The bucket of {@code v} (v >= 0). */
    static int index(long v) {
        int m = highestBit(v);
        if (m < SUB_BUCKET_BITS) {
            return (int) v;
        }
        int shift = m - SUB_BUCKET_BITS;
        return (shift << SUB_BUCKET_BITS) + (int) (v >>> shift);
    }

    /** The largest value that falls in bucket {@code i}. */
    static long highestValue(int i) {
        if (i < 2 << SUB_BUCKET_BITS) {
            return i;
        }
        int shift = (i >>> SUB_BUCKET_BITS) - 1;
        long lowest = (long) ((1 << SUB_BUCKET_BITS) + (i & ((1 << SUB_BUCKET_BITS) - 1))) << shift;
        return lowest + (1L << shift) - 1;
    }

    /** The position of the highest set bit of {@code v} (0 for 0 and 1), by halving: no JDK call. */
    private static int highestBit(long v) {
        int m = 0;
        if (v >= 1L << 32) {
            v >>>= 32;
            m = 32;
        }
        if (v >= 1L << 16) {
            v >>>= 16;
            m += 16;
        }
        if (v >= 1L << 8) {
            v >>>= 8;
            m += 8;
        }
        if (v >= 1L << 4) {
            v >>>= 4;
            m += 4;
        }
        if (v >= 1L << 2) {
            v >>>= 2;
            m += 2;
        }
        return v >= 2 ? m + 1 : m;
    }
}
