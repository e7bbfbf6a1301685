package io.jvhost.blk;

import io.jvhost.blk.userstore.PollerStore;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;

import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A store that completes on the poller through {@link BlockStore#openQueue} ({@link PollerStore},
 * written against the public API only): the poller watches each queue's completion fd, reaps, and
 * requests complete on the poller thread, in event and busy-poll mode.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class BlkSimulatorPollerStoreTest {
    static final int DISK_BYTES = 1 << 20;

    private BlkRig rig;

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldCompleteOnThePollerWhatTheStoreSignalsOnItsQueuesCompletionFd(IdleMode mode) throws Exception {
        PollerStore store = new PollerStore(DISK_BYTES, false);
        ExpectedDisk disk = new ExpectedDisk(store.contents(), 7);
        rig = BlkRig.serve(store, 2, new BackendOptions(mode, new int[][] {{0}, {1}})).start();
        for (int i = 0; i < 16; i++) {
            int q = i % 2;
            byte[] data = pattern(4096, i);
            rig.write(q, 8L * i, data);
            disk.expect(8L * i, data);
        }
        disk.assertMatches();
        for (int i = 0; i < 16; i++) {
            assertArrayEquals(disk.bytes(8L * i, 4096), rig.read(1 - i % 2, 8L * i, 4096), "read " + i);
        }
        assertFalse(store.completedOn.isEmpty());
        assertTrue(store.completedOn.stream().allMatch(t -> t.contains("poller")),
                "every request completed on a poller thread: " + store.completedOn);
    }

    @Test
    void shouldUseEveryRequestExactlyOnceWhenTheStoreCompletesSomeOnThePollerAndSomeOnItsOwnThread() throws Exception {
        // Completions on the poller skip the MPSC queue the others come through: both ways, mixed
        // within one batch of 32, still use each chain once and return what was written.
        RamStore ram = new RamStore(DISK_BYTES);
        ExecutorService worker = Executors.newSingleThreadExecutor();
        Set<String> completedOn = ConcurrentHashMap.newKeySet();
        BlockStore mixed = new BlockStore() {
            @Override
            public long size() {
                return ram.size();
            }

            @Override
            public void submit(BlockRequest[] requests, int count) {
                for (int i = 0; i < count; i++) {
                    BlockRequest[] one = {requests[i]};
                    if (requests[i].offset() / 4096 % 2 == 0) {
                        completedOn.add(Thread.currentThread().getName());
                        ram.submit(one, 1); // RamStore completes in the calling thread: here the poller
                    } else {
                        worker.execute(() -> {
                            completedOn.add(Thread.currentThread().getName());
                            ram.submit(one, 1);
                        });
                    }
                }
            }

            @Override
            public void close() {
                worker.shutdownNow();
                ram.close();
            }
        };
        rig = BlkRig.serve(mixed, 1).start();
        for (int round = 0; round < 2; round++) {
            boolean write = round == 0;
            List<BlkRig.Area> areas = new ArrayList<>();
            for (int i = 0; i < 32; i++) {
                BlkRig.Area a = rig.area(4096 + 512);
                long header = a.header(write ? BlkRig.OUT : BlkRig.IN, 8L * i);
                long data = write ? a.put(pattern(4096, i)) : a.room(4096);
                long status = a.status();
                rig.post(0, Buffer.readable(header, 16), write ? Buffer.readable(data, 4096) : Buffer.writable(data, 4096),
                        Buffer.writable(status, 1));
                areas.add(a);
            }
            Map<Integer, Integer> used = rig.awaitAll(0, 32);
            assertEquals(32, used.size(), "32 chains, each used once");
            if (!write) {
                for (int i = 0; i < 32; i++) {
                    assertArrayEquals(pattern(4096, i), rig.read(0, 8L * i, 4096), "sector " + 8L * i);
                }
            }
        }
        assertTrue(completedOn.stream().anyMatch(t -> t.contains("poller")), completedOn.toString());
        assertTrue(completedOn.stream().anyMatch(t -> !t.contains("poller")), completedOn.toString());
    }

    @Test
    void shouldReapPromptlyAQueueWhoseCompletionFdEpollCannotWatch() throws Exception {
        // Nothing wakes the poller for these completions: it must poll the queue, not sleep until
        // some other event (its idle wait is a second).
        PollerStore store = new PollerStore(DISK_BYTES, true);
        rig = BlkRig.serve(store, 1, new BackendOptions(IdleMode.EVENT, new int[][] {{0}})).start();
        long t0 = System.nanoTime();
        for (int i = 0; i < 10; i++) {
            rig.read(0, 8L * i, 4096);
        }
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
        assertTrue(millis < 3000, "10 reads took " + millis + " ms: completions waited for the poller's idle timeout");
    }
}
