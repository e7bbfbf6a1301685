package io.jvhost.blk;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.blk.userstore.CountingStore;
import io.jvhost.blk.userstore.CountingStore.Capabilities;
import io.jvhost.blk.userstore.CountingStore.Seen;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.blk.BlkRig.DISCARD;
import static io.jvhost.blk.BlkRig.FLAG_UNMAP;
import static io.jvhost.blk.BlkRig.FLUSH;
import static io.jvhost.blk.BlkRig.GET_ID;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.IOERR;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.UNSUPP;
import static io.jvhost.blk.BlkRig.WRITE_ZEROES;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A store written against the public API only ({@link CountingStore}, in a package of its own),
 * which completes every request later from its own thread, plugged into the device and driven
 * through both queues.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class BlkSimulatorUserStoreTest {
    static final int DISK_BYTES = 1 << 20;

    private CountingStore store;
    private ExpectedDisk disk;
    private BlkRig rig;

    private void serve(int queues) throws Exception {
        store = new CountingStore(DISK_BYTES, Capabilities.ALL);
        disk = new ExpectedDisk(store.contents(), 61);
        rig = BlkRig.serve(store, queues).start();
    }

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    @Test
    void shouldServeReadsAndWritesFromAStoreThatCompletesOnItsOwnThread() throws Exception {
        serve(2);
        for (int i = 0; i < 8; i++) {
            for (int q = 0; q < 2; q++) {
                byte[] data = pattern(2048, 10 * i + q);
                long sector = 64L * q + 4L * i;
                rig.write(q, sector, data);
                disk.expect(sector, data);
            }
        }
        disk.assertMatches();
        for (int i = 0; i < 8; i++) {
            for (int q = 0; q < 2; q++) {
                long sector = 64L * (1 - q) + 4L * i; // what the other queue wrote
                assertArrayEquals(disk.bytes(sector, 2048), rig.read(q, sector, 2048), "queue " + q + " sector " + sector);
            }
        }
        assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0));
        assertEquals(new Completion(1, OK), rig.command(1, FLUSH, 0));

        assertEquals(16, store.count(BlockRequest.Type.WRITE), "writes");
        assertEquals(16, store.count(BlockRequest.Type.READ), "reads");
        assertEquals(2, store.count(BlockRequest.Type.FLUSH), "flushes");
        assertEquals(34, store.total(), "requests of any kind");
        Set<String> submitters = new HashSet<>();
        for (Seen s : store.seen()) {
            assertEquals(CountingStore.THREAD_NAME, s.completedOn(), "completed on the store's own thread");
            submitters.add(s.submittedOn());
        }
        assertEquals(2, submitters.size(), "submitted by one poller per queue: " + submitters);
        assertFalse(submitters.contains(CountingStore.THREAD_NAME) || submitters.contains(Thread.currentThread().getName()),
                "submitted by the pollers: " + submitters);
    }

    @Test
    void shouldCompleteEveryRequestInFlightWhenTheStoreFinishesThemLater() throws Exception {
        serve(1);
        int requests = 64;
        Area a = rig.area(requests * 2048);
        Set<Integer> heads = new HashSet<>();
        for (int i = 0; i < requests; i++) {
            byte[] data = pattern(SECTOR, 300 + i);
            disk.expect(i, data);
            heads.add(rig.post(0, Buffer.readable(a.header(OUT, i), 16), Buffer.readable(a.put(data), SECTOR),
                    Buffer.writable(a.status(), 1)));
        }

        assertEquals(heads, rig.awaitAll(0, requests).keySet());
        disk.assertMatches();
        assertEquals(requests, store.count(BlockRequest.Type.WRITE));
    }

    @Test
    void shouldHandTheStoreDiscardAndWriteZeroesRangesInBytes() throws Exception {
        serve(1);
        disk.expectZeros(8, 8);
        disk.expectZeros(64, 16);
        disk.expectZeros(200, 1);
        disk.expectZeros(300, 2);

        assertEquals(new Completion(1, OK), rig.ranges(DISCARD, new long[] {8, 8, 0}, new long[] {64, 16, 0}));
        assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, new long[] {200, 1, 0}));
        assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, new long[] {300, 2, FLAG_UNMAP}));

        List<Seen> seen = store.seen();
        assertEquals(3, seen.size());
        assertEquals(BlockRequest.Type.DISCARD, seen.get(0).type());
        assertEquals(2, seen.get(0).ranges().size());
        assertArrayEquals(new long[] {8 * SECTOR, 8 * SECTOR}, seen.get(0).ranges().get(0));
        assertArrayEquals(new long[] {64 * SECTOR, 16 * SECTOR}, seen.get(0).ranges().get(1));
        assertEquals(BlockRequest.Type.WRITE_ZEROES, seen.get(1).type());
        assertFalse(seen.get(1).unmap(), "write-zeroes without UNMAP");
        assertArrayEquals(new long[] {200 * SECTOR, SECTOR}, seen.get(1).ranges().get(0));
        assertTrue(seen.get(2).unmap(), "write-zeroes with UNMAP");
        disk.assertMatches();
    }

    @Test
    void shouldNeverHandTheStoreARequestTheDeviceRefuses() throws Exception {
        serve(1);
        assertEquals(new Completion(1, IOERR), rig.transfer(0, IN, DISK_BYTES / SECTOR, SECTOR), "read past the end");
        assertEquals(new Completion(1, IOERR), rig.transfer(0, OUT, -1L, SECTOR), "write at sector 2^64-1");
        assertEquals(new Completion(1, IOERR), rig.transfer(0, OUT, 0, 100), "write of a partial sector");
        assertEquals(new Completion(1, UNSUPP), rig.command(0, 99, 0), "unknown type");
        assertEquals(new Completion(1, IOERR), rig.ranges(DISCARD, new long[] {DISK_BYTES / SECTOR, 1, 0}), "discard past the end");
        assertEquals(new Completion(1, UNSUPP), rig.ranges(WRITE_ZEROES, new long[] {0, 1, 2}), "unknown flag");
        Area a = rig.area(1024);
        assertEquals(new Completion(1, IOERR), rig.run(Buffer.readable(a.header(OUT, 0), 8), Buffer.writable(a.status(), 1)),
                "short header");

        assertEquals(0, store.total(), "requests that reached the store");
        disk.assertMatches();
    }

    @Test
    void shouldAnswerGetIdFromTheStoresIdCutToTwentyBytesWithoutCallingTheStore() throws Exception {
        serve(1);
        Area a = rig.area(1024);
        long header = a.header(GET_ID, 0);
        long id = a.room(20);
        long status = a.status();

        assertEquals(new Completion(21, OK), rig.run(Buffer.readable(header, 16), Buffer.writable(id, 20), Buffer.writable(status, 1)));

        assertArrayEquals("counting-store-seria".getBytes(StandardCharsets.US_ASCII), a.read(id, 20));
        assertEquals(0, store.total());
    }
}
