package io.jvhost.perf;

import java.util.List;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@link BlkBench}'s choice of what each target is compared with, and the targets it knows. */
class BlkBenchTest {
    @Test
    void shouldCompareTheIoUringFileStoreWithQemuStorageDaemonOnIoUringWhenBothRun() {
        assertEquals("qsd-uring", BlkBench.reference("jvhost-file", List.of("jvhost-file", "qsd", "qsd-uring")));
        assertEquals("qsd", BlkBench.reference("jvhost-file", List.of("jvhost-file", "qsd")), "the thread-pool qsd otherwise");
        assertEquals("qsd", BlkBench.reference("jvhost-file-threads", List.of("jvhost-file-threads", "qsd", "qsd-uring")));
    }

    @Test
    void shouldCompareRemoteStoresOnlyWithQemuStorageDaemonOnTheSameClusterOrServer() {
        List<String> all = List.of("jvhost-rbd", "qsd-rbd", "jvhost-nbd", "qsd-nbd", "qsd");
        assertEquals("qsd-rbd", BlkBench.reference("jvhost-rbd", all));
        assertEquals("qsd-nbd", BlkBench.reference("jvhost-nbd", all));
        assertNull(BlkBench.reference("jvhost-rbd", List.of("jvhost-rbd", "qsd")), "a file is no like of a cluster");
    }

    @Test
    void shouldCompareTheNullStoreWithQemuStorageDaemonsNullAndThenWithSpdksNullBdev() {
        List<String> all = List.of("jvhost-null", "qsd-null", "spdk-null", "qsd");
        assertEquals(List.of("qsd-null", "spdk-null"), BlkBench.references("jvhost-null", all), "ref, then ref2");
        assertEquals("qsd-null", BlkBench.reference("jvhost-null", all));
        assertEquals(List.of("spdk-null"), BlkBench.references("jvhost-null", List.of("jvhost-null", "spdk-null")));
        assertEquals(List.of("spdk-null", "qsd"), BlkBench.references("jvhost-null", List.of("jvhost-null", "spdk-null", "qsd")));
        assertFalse(new BlkBench.Options().targets.contains("spdk-null"), "SPDK, which needs building, only when asked for");
    }

    @Test
    void shouldCompareTheFreshAndTheWrittenRamDiskWithNullCoThatZeroesEveryReadBuffer() {
        List<String> all = List.of("jvhost-ram", "jvhost-ram-written", "qsd-null-zeroes", "qsd-null", "qsd");
        assertEquals("qsd-null-zeroes", BlkBench.reference("jvhost-ram", all));
        assertEquals("qsd-null-zeroes", BlkBench.reference("jvhost-ram-written", all));
        assertFalse(new BlkBench.Options().targets.contains("jvhost-ram-written"), "the written disk only when asked for");
    }

    @Test
    void shouldCompareNoReferenceTargetWithAnything() {
        for (String t : BlkBench.TARGETS) {
            if (t.startsWith("qsd") || t.startsWith("spdk")) {
                assertNull(BlkBench.reference(t, BlkBench.TARGETS), t);
            }
        }
    }

    @Test
    void shouldKnowEveryTargetThatIsAReference() {
        for (List<String> likes : BlkBench.REFERENCE.values()) {
            assertTrue(BlkBench.TARGETS.containsAll(likes), likes.toString());
        }
        assertTrue(BlkBench.TARGETS.containsAll(new BlkBench.Options().targets), "the default targets");
    }
}
