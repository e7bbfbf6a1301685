package io.jvhost.blk;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;

/**
 * Stopping a queue (GET_VRING_BASE) while the store still works on its requests: the stop waits
 * for them, but its poller goes on serving the other queues it runs.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class BlkSimulatorStopTest {
    static final int DISK_BYTES = 1 << 20;
    /** Requests from this sector on wait in the store until the test lets them go. */
    static final long HELD_SECTOR = 1024;

    private BlkRig rig;
    private GatedStore store;

    @AfterEach
    void close() throws Exception {
        if (store != null) {
            store.release(); // never leave a request in the store, whatever failed
        }
        if (rig != null) {
            rig.close();
        }
    }

    /** A RAM disk whose requests at or past {@link #HELD_SECTOR} wait until {@link #release()}. */
    static final class GatedStore implements BlockStore {
        final RamStore ram = new RamStore(DISK_BYTES);
        final LinkedBlockingQueue<BlockRequest> held = new LinkedBlockingQueue<>();
        private final BlockRequest[] one = new BlockRequest[1];

        @Override
        public long size() {
            return ram.size();
        }

        @Override
        public boolean canFlush() {
            return ram.canFlush();
        }

        @Override
        public synchronized void submit(BlockRequest[] requests, int count) {
            for (int i = 0; i < count; i++) {
                if (requests[i].offset() >= HELD_SECTOR * SECTOR) {
                    held.add(requests[i]);
                } else {
                    one[0] = requests[i];
                    ram.submit(one, 1); // completes inline
                }
            }
        }

        /** Serves and completes every held request, here on the caller's thread. */
        synchronized void release() {
            for (BlockRequest r; (r = held.poll()) != null; ) {
                one[0] = r;
                ram.submit(one, 1);
            }
        }

        void awaitHeld(int n) {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (held.size() < n) {
                if (System.nanoTime() > deadline) {
                    throw new AssertionError("only " + held.size() + " of " + n + " requests reached the store");
                }
                Thread.onSpinWait();
            }
        }

        @Override
        public void close() {
            ram.close();
        }
    }

    @Test
    void shouldKeepServingTheOtherQueueOfThePollerWhileAStoppingQueueWaitsForItsIo() throws Exception {
        store = new GatedStore();
        byte[] disk = pattern(DISK_BYTES, 7);
        store.ram.contents().copyFrom(MemorySegment.ofArray(disk));
        rig = BlkRig.serve(store, 2, new BackendOptions(IdleMode.EVENT, new int[][] {{0, 1}})).start();
        assertSame(rig.backend.poller(0), rig.backend.poller(1), "both queues on one poller");
        rig.read(0, 0, 4096);
        rig.read(0, 8, 4096); // queue 0 has taken two requests

        Area a = rig.area(4096 + 512);
        long header = a.header(IN, HELD_SECTOR), data = a.room(4096), status = a.status();
        int slow = rig.post(0, Buffer.readable(header, 16), Buffer.writable(data, 4096), Buffer.writable(status, 1));
        store.awaitHeld(1);

        // QEMU stops queue 0: GET_VRING_BASE, answered once the queue has stopped.
        CompletableFuture<Integer> base = CompletableFuture.supplyAsync(() -> {
            try {
                return rig.frontend.getVringBase(0);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
        for (int i = 0; i < 20; i++) {
            long sector = 16L * i;
            assertArrayEquals(Arrays.copyOfRange(disk, (int) sector * SECTOR, (int) sector * SECTOR + 4096),
                    rig.read(1, sector, 4096), "queue 1 serves read " + i + " while queue 0 stops");
        }
        assertFalse(base.isDone(), "queue 0's stop waits for the read in the store");

        store.release();

        assertEquals(3, base.get(10, TimeUnit.SECONDS), "base: the three requests queue 0 took");
        Map<Integer, Integer> used = rig.awaitAll(0, 1);
        assertEquals(Map.of(slow, 4096 + 1), used, "the held read completed on queue 0");
        assertEquals(OK, rig.ram.at(status, 1).get(ValueLayout.JAVA_BYTE, 0));
        int at = (int) HELD_SECTOR * SECTOR;
        assertArrayEquals(Arrays.copyOfRange(disk, at, at + 4096), a.read(data, 4096));
    }
}
