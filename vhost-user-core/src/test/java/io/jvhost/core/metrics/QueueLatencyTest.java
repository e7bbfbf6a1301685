package io.jvhost.core.metrics;

import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class QueueLatencyTest {

    @Test
    void shouldRecordOneLatencyPerPublishAfterWorkWasSeenAndEveryBatchSize() throws Exception {
        QueueLatency q = new QueueLatency();
        LatencyRecorder r = q.recorder();
        r.workSeen();
        Thread.sleep(2);
        r.workSeen(); // only the first sighting before a publish starts the clock
        r.published(5);
        r.published(3); // no work seen since: a batch, but no latency sample

        Histogram latency = q.latencySnapshot(), batch = q.batchSnapshot();
        assertEquals(1, latency.getTotalCount());
        assertTrue(latency.getMaxValue() >= 2_000_000, "at least the 2 ms slept: " + latency.getMaxValue());
        assertEquals(2, batch.getTotalCount());
        assertEquals(4.0, batch.getMean(), 0.01);
    }

    @Test
    void shouldStartEachSnapshotAfterThePreviousOne() {
        QueueLatency q = new QueueLatency();
        q.recorder().workSeen();
        q.recorder().published(1);
        assertEquals(1, q.latencySnapshot().getTotalCount());
        assertEquals(0, q.latencySnapshot().getTotalCount(), "an interval, not a running total");
        assertEquals("no batches", q.describe());
    }

    @Test
    void shouldCountEachLatencyInTheFirstBucketAtOrAboveItAndSumThemExactly() throws Exception {
        QueueLatency q = new QueueLatency();
        LatencyRecorder r = q.recorder();
        r.workSeen();
        r.published(1); // well under 1 ms
        r.workSeen();
        Thread.sleep(3);
        r.published(1); // over 2 ms

        LatencySnapshot s = q.snapshot(new long[] {1_000_000, 2_000_000});
        assertEquals(2, s.count());
        assertArrayEquals(new long[] {1, 0, 1}, s.counts());
        assertTrue(s.sumNanos() >= 3_000_000, "the sum of what was recorded, exactly: " + s.sumNanos());
        assertEquals(2, q.snapshot().count(), "cumulative: a second scrape sees the same");
    }
}
