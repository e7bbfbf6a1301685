package io.jvhost.blk;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import static io.jvhost.blk.BlkRig.DISCARD;
import static io.jvhost.blk.BlkRig.FLAG_UNMAP;
import static io.jvhost.blk.BlkRig.FLUSH;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.WRITE_ZEROES;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Two request queues, each on its own poller, with requests in flight on both at once: against a
 * RAM disk, and against an image file on each I/O engine (a ring per queue, or two I/O workers),
 * checked byte for byte on disk.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class BlkSimulatorMultiQueueTest {
    @TempDir
    Path dir;
    private BlkRig rig;

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    /** A request posted and not yet awaited: where its data and status byte are. */
    private record Posted(int queue, int head, long dataGpa, int length, long statusGpa) {}

    private Posted post(int q, int type, long sector, byte[] data, int length) {
        Area a = rig.area(length + 512);
        long header = a.header(type, sector);
        long at = type == IN ? a.room(length) : a.put(data);
        long status = a.status();
        int head = rig.post(q, Buffer.readable(header, 16), new Buffer(at, length, type == IN), Buffer.writable(status, 1));
        return new Posted(q, head, at, length, status);
    }

    /** Waits for every posted request on both queues; asserts each completed OK with the right used length. */
    private void awaitAll(List<Posted> posted, boolean reads) {
        for (int q = 0; q < 2; q++) {
            Map<Integer, Posted> byHead = new HashMap<>();
            for (Posted p : posted) {
                if (p.queue() == q) {
                    byHead.put(p.head(), p);
                }
            }
            Map<Integer, Integer> used = rig.awaitAll(q, byHead.size());
            assertEquals(byHead.keySet(), used.keySet(), "heads completed on queue " + q);
            for (Posted p : byHead.values()) {
                assertEquals(reads ? p.length() + 1 : 1, used.get(p.head()), "used length on queue " + q);
                assertEquals(OK, rig.ram.at(p.statusGpa(), 1).get(ValueLayout.JAVA_BYTE, 0),
                        "status on queue " + q);
            }
        }
    }

    @Test
    void shouldServeRequestsInFlightOnTwoQueuesFromTwoPollers() throws Exception {
        RamStore store = new RamStore(4 << 20);
        ExpectedDisk disk = new ExpectedDisk(store.contents(), 41);
        rig = BlkRig.serve(store, 2).start();
        assertEquals(2, rig.backend.pollerCount(), "one poller per queue");
        assertNotSame(rig.backend.poller(0), rig.backend.poller(1));

        List<Posted> writes = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            for (int q = 0; q < 2; q++) {
                long sector = q * 4096L + 16L * i;
                byte[] data = pattern(4096, 2 * i + q);
                disk.expect(sector, data);
                writes.add(post(q, OUT, sector, data, data.length));
            }
        }
        awaitAll(writes, false);
        disk.assertMatches();

        List<Posted> reads = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            for (int q = 0; q < 2; q++) {
                reads.add(post(q, IN, (1 - q) * 4096L + 16L * i, null, 4096)); // what the other queue wrote
            }
        }
        awaitAll(reads, true);
        for (int i = 0; i < reads.size(); i++) {
            Posted p = reads.get(i);
            long sector = (1 - p.queue()) * 4096L + 16L * (i / 2);
            assertArrayEquals(disk.bytes(sector, 4096), rig.ram.at(p.dataGpa(), 4096).toArray(ValueLayout.JAVA_BYTE),
                    "read on queue " + p.queue() + " of sector " + sector);
        }
        assertTrue(rig.backend.queue(0).counters().chains >= 80 && rig.backend.queue(1).counters().chains >= 80,
                rig.backend.queue(0).counters() + " / " + rig.backend.queue(1).counters());
    }

    @ParameterizedTest
    @EnumSource(value = TestDisk.Kind.class, names = {"FILE_URING", "FILE_THREADS", "FILE_INLINE"})
    void shouldKeepAnImageFileByteForByteWithTwoQueuesOnEitherIoEngine(TestDisk.Kind kind) throws Exception {
        TestDisk.assumeAvailable(kind);
        int bytes = 4 << 20;
        Path image = dir.resolve("disk.img");
        byte[] expected = pattern(bytes, 51);
        Files.write(image, expected);
        rig = BlkRig.serve(new FileStore(image, false, false, 2, kind.engine()), 2).start();

        // Writes of many sizes in flight on both queues at once, to disjoint places.
        List<Posted> writes = new ArrayList<>();
        long sector = 0;
        for (int i = 0; i < 96; i++) {
            int q = i % 2;
            int length = SECTOR * (1 + (i * 7) % 32);
            byte[] data = pattern(length, 1000 + i);
            System.arraycopy(data, 0, expected, (int) (sector * SECTOR), length);
            writes.add(post(q, OUT, sector, data, length));
            sector += length / SECTOR + (i % 3); // leave some sectors alone
        }
        assertTrue(sector * SECTOR < bytes);
        awaitAll(writes, false);
        assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0), "FLUSH on queue 0");
        assertEquals(new Completion(1, OK), rig.command(1, FLUSH, 0), "FLUSH on queue 1");

        // Zeroing: plain, with unmap (a punched hole), discard, and a range of no sectors.
        long[][] zeroes = {{6000, 8, 0}, {6100, 64, FLAG_UNMAP}, {7000, 0, 0}};
        assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, zeroes), "WRITE_ZEROES");
        assertEquals(new Completion(1, OK), rig.ranges(DISCARD, new long[] {7200, 24, 0}), "DISCARD");
        for (long[] z : new long[][] {zeroes[0], zeroes[1]}) {
            Arrays.fill(expected, (int) (z[0] * SECTOR), (int) ((z[0] + z[1]) * SECTOR), (byte) 0);
        }
        byte[] actual = Files.readAllBytes(image);
        // A discarded range may read back as anything; the file system either punched the hole or not.
        int from = 7200 * SECTOR, to = (7200 + 24) * SECTOR;
        byte[] discarded = Arrays.copyOfRange(actual, from, to);
        assertTrue(Arrays.equals(discarded, new byte[to - from]) || Arrays.equals(discarded, Arrays.copyOfRange(expected, from, to)),
                "the discarded range holds zeros or what it held before");
        System.arraycopy(discarded, 0, expected, from, discarded.length);

        assertArrayEquals(expected, actual, "the image file");

        // Everything read back through both queues, with reads in flight on both.
        List<Posted> reads = new ArrayList<>();
        int chunk = 64 * 1024;
        for (int i = 0; i < bytes / chunk; i++) {
            reads.add(post(i % 2, IN, (long) i * chunk / SECTOR, null, chunk));
        }
        awaitAll(reads, true);
        for (int i = 0; i < reads.size(); i++) {
            assertArrayEquals(Arrays.copyOfRange(expected, i * chunk, (i + 1) * chunk),
                    rig.ram.at(reads.get(i).dataGpa(), chunk).toArray(ValueLayout.JAVA_BYTE), "chunk " + i);
        }
    }
}
