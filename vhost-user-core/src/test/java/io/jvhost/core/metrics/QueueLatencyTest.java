package io.jvhost.core.metrics;

import org.HdrHistogram.Histogram;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class QueueLatencyTest {

    @Test
    void shouldRecordOneLatencyPerPublishAfterWorkWasSeenAndEveryBatchSize() throws Exception {
        QueueLatency q = new QueueLatency();
        q.workSeen();
        Thread.sleep(2);
        q.workSeen(); // only the first sighting before a publish starts the clock
        q.published(5);
        q.published(3); // no work seen since: a batch, but no latency sample

        Histogram latency = q.latencySnapshot(), batch = q.batchSnapshot();
        assertEquals(1, latency.getTotalCount());
        assertTrue(latency.getMaxValue() >= 2_000_000, "at least the 2 ms slept: " + latency.getMaxValue());
        assertEquals(2, batch.getTotalCount());
        assertEquals(4.0, batch.getMean(), 0.01);
    }

    @Test
    void shouldStartEachSnapshotAfterThePreviousOne() {
        QueueLatency q = new QueueLatency();
        q.workSeen();
        q.published(1);
        assertEquals(1, q.latencySnapshot().getTotalCount());
        assertEquals(0, q.latencySnapshot().getTotalCount(), "an interval, not a running total");
        assertEquals("no batches", q.describe());
    }
}
