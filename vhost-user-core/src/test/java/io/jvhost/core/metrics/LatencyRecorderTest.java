package io.jvhost.core.metrics;

import java.io.InputStream;
import java.lang.classfile.ClassFile;
import java.lang.classfile.constantpool.PoolEntry;
import java.lang.classfile.constantpool.StringEntry;
import java.util.ArrayList;
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
}
