package io.jvhost.blk;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.testkit.DevCeph;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

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
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link RbdStore} against a real Ceph cluster ({@code scripts/dev-ceph.sh}, one per class),
 * driven through a real vhost-user socket and rings by the frontend simulator, and checked with
 * {@code rbd export}: what the guest wrote is what the cluster holds, byte for byte.
 */
@Tag("ceph")
@Timeout(value = 5, unit = TimeUnit.MINUTES)
class RbdStoreTest {
    static final int IMAGE_BYTES = 4 << 20;
    /** virtio-blk config offset of the writeback byte (virtio 1.2 §5.2.4). */
    static final int WRITEBACK = 32;
    static DevCeph ceph;
    private BlkRig rig;
    private static int images; // image names stay unique across the class's tests

    @BeforeAll
    static void cluster() throws Exception {
        ceph = DevCeph.start(RbdStoreTest.class);
    }

    @AfterAll
    static void stopCluster() throws Exception {
        if (ceph != null) {
            ceph.close();
        }
    }

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    /** A new image of {@code bytes} filled with {@code contents} (null: left empty); its "pool/name". */
    private String image(long bytes, byte[] contents) throws Exception {
        String name = "store-" + (++images);
        if (contents == null) {
            return ceph.createImage(name, bytes);
        }
        java.nio.file.Path f = ceph.dir().resolve("import-" + name);
        java.nio.file.Files.write(f, contents);
        ceph.rbd("import", "--no-progress", f.toString(), DevCeph.POOL + "/" + name);
        java.nio.file.Files.delete(f);
        return DevCeph.POOL + "/" + name;
    }

    private RbdStore open(String image) throws Exception {
        String[] p = image.split("/");
        return RbdStore.open(ceph.conf(), null, p[0], p[1], false, Duration.ofSeconds(20));
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

    /** Waits for every posted request; asserts each completed OK with the right used length. */
    private void awaitAll(List<Posted> posted, boolean reads, int queues) {
        for (int q = 0; q < queues; q++) {
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
                assertEquals(OK, rig.ram.at(p.statusGpa(), 1).get(ValueLayout.JAVA_BYTE, 0), "status on queue " + q);
            }
        }
    }

    @Test
    void shouldKeepAnRbdImageByteForByteWithManyRequestsOfEveryTypeInFlightOnTwoQueues() throws Exception {
        byte[] expected = pattern(IMAGE_BYTES, 61);
        String image = image(IMAGE_BYTES, expected);
        RbdStore store = open(image);
        assertEquals(IMAGE_BYTES, store.size());
        rig = BlkRig.serve(store, 2).start();

        // 96 writes of many sizes in flight on both queues at once, to disjoint places.
        List<Posted> writes = new ArrayList<>();
        long sector = 0;
        for (int i = 0; i < 96; i++) {
            int length = SECTOR * (1 + (i * 7) % 32);
            byte[] data = pattern(length, 1000 + i);
            System.arraycopy(data, 0, expected, (int) (sector * SECTOR), length);
            writes.add(post(i % 2, OUT, sector, data, length));
            sector += length / SECTOR + (i % 3); // leave some sectors alone
        }
        assertTrue(sector * SECTOR < IMAGE_BYTES / 2);
        awaitAll(writes, false, 2);

        // One write of 64 one-sector segments scattered in guest memory: 64 iovecs into librbd.
        Area a = rig.area(64 * (SECTOR + 128) + 1024);
        long header = a.header(OUT, 5000);
        Buffer[] chain = new Buffer[66];
        chain[0] = Buffer.readable(header, 16);
        for (int i = 0; i < 64; i++) {
            byte[] data = pattern(SECTOR, 7000 + i);
            chain[1 + i] = Buffer.readable(a.put(data), SECTOR);
            System.arraycopy(data, 0, expected, (5000 + i) * SECTOR, SECTOR);
        }
        chain[65] = Buffer.writable(a.status(), 1);
        assertEquals(new Completion(1, OK), rig.run(1, chain), "64-segment write");

        assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0), "FLUSH on queue 0");
        assertEquals(new Completion(1, OK), rig.command(1, FLUSH, 0), "FLUSH on queue 1");

        // Zeroing: plain, with unmap, and a range of no sectors; then a discard.
        long[][] zeroes = {{6000, 8, 0}, {6100, 64, FLAG_UNMAP}, {7000, 0, 0}};
        assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, zeroes), "WRITE_ZEROES");
        assertEquals(new Completion(1, OK), rig.ranges(DISCARD, new long[] {7200, 24, 0}), "DISCARD");
        for (long[] z : new long[][] {zeroes[0], zeroes[1]}) {
            Arrays.fill(expected, (int) (z[0] * SECTOR), (int) ((z[0] + z[1]) * SECTOR), (byte) 0);
        }
        assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0), "FLUSH after zeroing");

        byte[] actual = ceph.export(image);
        // A discarded range reads back as zeros or as before (librbd skips partial-object discards).
        int from = 7200 * SECTOR, to = (7200 + 24) * SECTOR;
        byte[] discarded = Arrays.copyOfRange(actual, from, to);
        assertTrue(Arrays.equals(discarded, new byte[to - from]) || Arrays.equals(discarded, Arrays.copyOfRange(expected, from, to)),
                "the discarded range holds zeros or what it held before");
        System.arraycopy(discarded, 0, expected, from, discarded.length);
        assertArrayEquals(expected, actual, "rbd export of the image");

        // Everything read back through both queues, 64 reads in flight.
        List<Posted> reads = new ArrayList<>();
        int chunk = 64 * 1024;
        for (int i = 0; i < IMAGE_BYTES / chunk; i++) {
            reads.add(post(i % 2, IN, (long) i * chunk / SECTOR, null, chunk));
        }
        awaitAll(reads, true, 2);
        for (int i = 0; i < reads.size(); i++) {
            assertArrayEquals(Arrays.copyOfRange(expected, i * chunk, (i + 1) * chunk),
                    rig.ram.at(reads.get(i).dataGpa(), chunk).toArray(ValueLayout.JAVA_BYTE), "chunk " + i);
        }
        assertEquals(0, store.inflight(), "every request completed once");
        assertEquals(0, store.drainCompletions(), "nothing left to drain");
        assertFalse(completionThreadRuns(), "the queues' pollers drained librbd's completions: no store thread");
    }

    private static boolean completionThreadRuns() {
        return Thread.getAllStackTraces().keySet().stream().anyMatch(t -> t.getName().endsWith("-completions"));
    }

    @Test
    void shouldAskItsPollerToSleepWhenIdleForLibrbdsThreadsMakeTheCompletions() throws Exception {
        RbdStore store = open(image(IMAGE_BYTES, pattern(IMAGE_BYTES, 72)));
        try (store) {
            assertTrue(new BlkDevice(store, 1).handler(0).sleepWhenIdle(), "an adaptive poller must not spin on the CPU librbd's threads need");
        }
    }

    @Test
    void shouldServeTwoQueuesOnOnePollerAndAStoreWrappingItWithoutAQueue() throws Exception {
        byte[] expected = pattern(IMAGE_BYTES, 71);
        String image = image(IMAGE_BYTES, expected);
        RbdStore store = open(image);
        // Both queues' completion fds (duplicates of the image's one eventfd) in one poller's epoll set.
        rig = BlkRig.serve(store, 2, new BackendOptions(IdleMode.EVENT, new int[][] {{0, 1}})).start();
        for (int i = 0; i < 8; i++) {
            byte[] data = pattern(4096, 300 + i);
            rig.write(i % 2, 8L * i, data);
            System.arraycopy(data, 0, expected, 8 * i * SECTOR, data.length);
        }
        for (int i = 0; i < 8; i++) {
            assertArrayEquals(Arrays.copyOfRange(expected, 8 * i * SECTOR, 8 * i * SECTOR + 4096), rig.read(1 - i % 2, 8L * i, 4096));
        }
        assertFalse(completionThreadRuns(), "drained by the poller");
        rig.close();
        rig = null;

        // A store a user wrapped around it submits without a queue: the store's own thread drains.
        RbdStore inner = open(image);
        BlockStore wrapping = new BlockStore() {
            @Override
            public long size() {
                return inner.size();
            }

            @Override
            public void submit(BlockRequest[] requests, int count) {
                inner.submit(requests, count);
            }

            @Override
            public void close() {
                inner.close();
            }
        };
        rig = BlkRig.serve(wrapping, 1).start();
        assertArrayEquals(Arrays.copyOfRange(expected, 0, 65536), rig.read(0, 0, 65536));
        assertTrue(completionThreadRuns(), "the store's completion thread drains for it");
        rig.close();
        rig = null;
        assertFalse(completionThreadRuns(), "and stops with the store");
    }

    @Test
    void shouldMakeAWriteDurableInTheClusterBeforeCompletingItWhenTheGuestTurnsItsWriteCacheOff() throws Exception {
        String image = image(IMAGE_BYTES, null);
        // librbd's cache in writeback mode, keeping dirty data up to 30 s: only a flush makes a
        // write visible to other clients sooner. (It writes through until the first flush.)
        java.nio.file.Path conf = ceph.dir().resolve("writeback.conf");
        java.nio.file.Files.writeString(conf, java.nio.file.Files.readString(ceph.conf())
                + "\n[client.admin]\nrbd cache policy = writeback\nrbd cache max dirty age = 30\n");
        String[] p = image.split("/");
        rig = BlkRig.serve(RbdStore.open(conf, null, p[0], p[1], false, Duration.ofSeconds(20)), 1).start();
        rig.write(0, 0, pattern(4096, 1));
        assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0));

        assertEquals(0, rig.frontend.setConfig(WRITEBACK, new byte[] {0}), "write cache off");
        byte[] data = pattern(8192, 2);
        rig.write(0, 64, data);

        // No FLUSH from the guest: the store flushed before completing, so another client sees the write now.
        byte[] actual = ceph.export(image);
        assertArrayEquals(data, Arrays.copyOfRange(actual, 64 * SECTOR, 64 * SECTOR + data.length));
    }

    @Test
    void shouldReportTheNewCapacityAfterRbdResizesTheImageUnderTheStore() throws Exception {
        String image = image(IMAGE_BYTES, null);
        rig = BlkRig.serve(open(image), 1).start();
        assertEquals(IMAGE_BYTES / SECTOR, rig.capacity());
        assertFalse(rig.device.checkResize(), "nothing changed yet");

        ceph.rbd("resize", "--no-progress", "--size", (3 * IMAGE_BYTES / 1024) + "K", image);
        // librbd learns of the new header through its watch: soon, not necessarily at once.
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        boolean changed = false;
        while (!changed && System.nanoTime() < deadline) {
            changed = rig.device.checkResize();
            if (!changed) {
                Thread.sleep(100);
            }
        }
        assertTrue(changed, "the store saw the new size within 30 s");
        assertEquals(3L * IMAGE_BYTES / SECTOR, rig.capacity(), "capacity in GET_CONFIG");

        byte[] data = pattern(4096, 31);
        long sector = 3L * IMAGE_BYTES / SECTOR - 8;
        rig.write(0, sector, data);
        assertArrayEquals(data, rig.read(0, sector, 4096), "the new sectors are served");
        assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0));
        assertArrayEquals(data, Arrays.copyOfRange(ceph.export(image), (int) (sector * SECTOR), (int) (sector * SECTOR) + 4096));
        assertFalse(rig.device.checkResize(), "the same size again");
    }
}
