package io.jvhost.core.metrics;

import java.io.InputStream;
import java.lang.classfile.ClassFile;
import java.lang.classfile.constantpool.PoolEntry;
import java.lang.classfile.constantpool.StringEntry;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class LatencyRecorderTest {

    @Test
    void shouldPutEveryValueInABucketUnderOnePercentWideWhoseHighestValueIsAtLeastIt() {
        for (long v = 0; v < 1 << 20; v++) {
            checkBucket(v);
        }
        for (long v = 1 << 20; v <= LatencyRecorder.MAX_NANOS; v += v / 1000 + 1) {
            checkBucket(v);
        }
        checkBucket(LatencyRecorder.MAX_NANOS);
    }

    private static void checkBucket(long v) {
        int i = LatencyRecorder.index(v);
        long highest = LatencyRecorder.highestValue(i);
        long lowest = i == 0 ? 0 : LatencyRecorder.highestValue(i - 1) + 1;
        assertTrue(lowest <= v && v <= highest, v + " in [" + lowest + ", " + highest + "]");
        assertTrue(highest - lowest <= Math.max(0, lowest / 128), "bucket of " + v + " too wide: " + lowest + ".." + highest);
    }

    /**
     * The poller runs this class's methods once per batch, so C2 compiles them late; HotSpot's
     * compile request, on the poller, first interns the class's String constants. None, none allocated.
     */
    @Test
    void shouldHaveNoStringConstantsForACompileRequestedByThePollerToIntern() throws Exception {
        byte[] bytes;
        try (InputStream in = LatencyRecorder.class.getResourceAsStream("LatencyRecorder.class")) {
            bytes = in.readAllBytes();
        }
        List<String> strings = new ArrayList<>();
        for (PoolEntry e : ClassFile.of().parse(bytes).constantPool()) {
            if (e instanceof StringEntry s) {
                strings.add(s.stringValue());
            }
        }
        assertEquals(List.of(), strings);
    }

    @Test
    void shouldCountOutOfRangeValuesAtTheEdgesInsteadOfThrowing() {
        LatencyRecorder r = new LatencyRecorder();
        r.published(LatencyRecorder.MAX_BATCH * 4);
        r.published(-1);
        long[] batches = r.batchCounts();
        assertEquals(1, batches[batches.length - 1]);
        assertEquals(1, batches[0]);
    }

    @Test
    void shouldTimeEveryBatchWhileBatchesAreSlowAndOneInSixteenWhileBigOnesComeFasterThanEveryTenMicroseconds() {
        long[] now = {1_000_000};
        LatencyRecorder r = new LatencyRecorder(() -> now[0]);
        batches(r, now, 20, 1_000_000, 32); // 1 ms apart
        assertEquals(20, timed(r), "every slow batch timed");
        assertEquals(20 * 300, r.latencySumNanos, "each from work seen to publish");

        batches(r, now, 1600, 1_000, 32); // a busy queue: 1 us apart
        // The first fast batch still ends a 1 ms gap; the second is 1 us after a timed one.
        assertEquals(20 + 2 + 1598 / LatencyRecorder.SAMPLE, timed(r),
                "the first two fast batches timed, then one in 16");

        batches(r, now, LatencyRecorder.SAMPLE, 1_000_000, 32); // slow again: the next timed one sees it
        long before = timed(r);
        batches(r, now, 20, 1_000_000, 32);
        assertEquals(before + 20, timed(r), "every batch timed again");
        assertEquals(20 + 1600 + LatencyRecorder.SAMPLE + 20, Arrays.stream(r.batchCounts()).sum(),
                "every batch's size counted, timed or not");
    }

    @Test
    void shouldTimeEveryRequestAnsweredOnItsOwnHoweverFastTheyCome() {
        long[] now = {1_000_000};
        LatencyRecorder r = new LatencyRecorder(() -> now[0]);
        batches(r, now, 1000, 1_000, 1);
        assertEquals(1000, timed(r));
    }

    /** {@code n} batches of {@code elements} {@code gap} ns apart, each published 300 ns after its work was seen. */
    private static void batches(LatencyRecorder r, long[] now, int n, long gap, int elements) {
        for (int i = 0; i < n; i++) {
            r.workSeen();
            now[0] += 300;
            r.published(elements);
            now[0] += gap - 300;
        }
    }

    private static long timed(LatencyRecorder r) {
        return Arrays.stream(r.latencyCounts()).sum();
    }
}
