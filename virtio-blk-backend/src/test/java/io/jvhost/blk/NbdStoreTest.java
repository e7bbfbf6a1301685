package io.jvhost.blk;

import io.jvhost.blk.nbd.NbdException;
import io.jvhost.blk.nbd.NbdStore;
import io.jvhost.blk.nbd.NbdUri;
import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.testkit.NbdServer;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static io.jvhost.blk.BlkRig.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The NBD store against real servers (qemu-nbd on a raw image, nbdkit), driven through the whole
 * device by the simulated guest; what was written is checked in the image file the server
 * exports, not only by reading it back through the store.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class NbdStoreTest {
    static final int MIB = 1 << 20;
    static final long VIRTIO_BLK_F_FLUSH = 9, VIRTIO_BLK_F_DISCARD = 13, VIRTIO_BLK_F_WRITE_ZEROES = 14, VIRTIO_BLK_F_RO = 5;

    @TempDir
    Path dir;

    @BeforeAll
    static void tools() {
        NbdServer.require();
    }

    static Path image(Path dir, String name, long size) throws IOException {
        Path p = dir.resolve(name);
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(size);
        }
        return p;
    }

    static NbdStore open(String uri) throws NbdException {
        return NbdStore.open(NbdStore.Options.of(NbdUri.parse(uri), null));
    }

    static byte[] fileBytes(Path image, long offset, int length) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "r")) {
            byte[] b = new byte[length];
            f.seek(offset);
            f.readFully(b);
            return b;
        }
    }

    @Test
    void shouldReadAndWriteThroughQemuNbdAndLeaveTheBytesInTheImage() throws Exception {
        Path image = image(dir, "disk.img", 16 * MIB);
        try (NbdServer server = NbdServer.qemuNbdUnix(image, dir.resolve("nbd.sock"), "disk", "--discard=unmap");
             BlkRig rig = BlkRig.serve(open("nbd+unix:///disk?socket=" + server.socket()), 1).start()) {
            assertEquals(16 * MIB / 512, rig.capacity());
            assertTrue(rig.offers((int) VIRTIO_BLK_F_FLUSH) && rig.offers((int) VIRTIO_BLK_F_DISCARD)
                    && rig.offers((int) VIRTIO_BLK_F_WRITE_ZEROES), "qemu-nbd's flags became features");
            assertFalse(rig.offers((int) VIRTIO_BLK_F_RO));
            long[] sectors = {0, 1000, 16 * MIB / 512 - 128};
            int[] lengths = {4096, 64 << 10, 64 << 10};
            for (int i = 0; i < sectors.length; i++) {
                rig.write(0, sectors[i], pattern(lengths[i], i + 1));
            }
            assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0));
            for (int i = 0; i < sectors.length; i++) {
                assertArrayEquals(pattern(lengths[i], i + 1), rig.read(0, sectors[i], lengths[i]), "read back at " + sectors[i]);
                assertArrayEquals(pattern(lengths[i], i + 1), fileBytes(image, sectors[i] * 512, lengths[i]),
                        "image file at sector " + sectors[i]);
            }
            assertEquals(new Completion(1, IOERR), rig.transfer(0, OUT, 16 * MIB / 512 - 7, 4096), "past the end");
        }
    }

    @Test
    void shouldKeepManyRequestsInFlightOnTwoQueues() throws Exception {
        Path image = image(dir, "disk.img", 16 * MIB);
        int perQueue = 64, length = 16 << 10;
        try (NbdServer server = NbdServer.qemuNbdUnix(image, dir.resolve("nbd.sock"), "disk");
             NbdStore store = open("nbd+unix:///disk?socket=" + server.socket());
             BlkRig rig = BlkRig.serve(store, 2).start()) {
            assertEquals(2, store.queueConnections(), "qemu-nbd --shared allows multi-conn: each queue has its own connection");
            List<BlkRig.Area> areas = new ArrayList<>();
            for (int q = 0; q < 2; q++) {
                for (int i = 0; i < perQueue; i++) {
                    long sector = (long) (q * perQueue + i) * (length / 512);
                    BlkRig.Area a = rig.area(length + 512);
                    areas.add(a);
                    rig.post(q, Buffer.readable(a.header(OUT, sector), 16),
                            Buffer.readable(a.put(pattern(length, (int) sector)), length), Buffer.writable(a.status(), 1));
                }
            }
            for (int q = 0; q < 2; q++) {
                assertEquals(perQueue, rig.awaitAll(q, perQueue).size());
            }
            // Reads, all posted before any is awaited; each lands in its own buffer.
            long[] data = new long[2 * perQueue];
            long[] status = new long[2 * perQueue];
            BlkRig.Area reads = rig.area(2 * perQueue * (length + 512) + 4096);
            for (int q = 0; q < 2; q++) {
                for (int i = 0; i < perQueue; i++) {
                    int k = q * perQueue + i;
                    long header = reads.header(IN, (long) k * (length / 512));
                    data[k] = reads.room(length);
                    status[k] = reads.status();
                    rig.post(q, Buffer.readable(header, 16), Buffer.writable(data[k], length), Buffer.writable(status[k], 1));
                }
            }
            for (int q = 0; q < 2; q++) {
                Map<Integer, Integer> used = rig.awaitAll(q, perQueue);
                assertTrue(used.values().stream().allMatch(n -> n == length + 1), "every read returned all its bytes: " + used);
            }
            for (int k = 0; k < 2 * perQueue; k++) {
                long sector = (long) k * (length / 512);
                assertEquals(OK, reads.read(status[k], 1)[0], "status of read " + k);
                assertArrayEquals(pattern(length, (int) sector), reads.read(data[k], length), "read " + k);
                assertArrayEquals(pattern(length, (int) sector), fileBytes(image, sector * 512, length), "image at " + sector);
            }
            assertTrue(rig.backend.queue(0).counters().chains >= 2 * perQueue
                    && rig.backend.queue(1).counters().chains >= 2 * perQueue, "both queues carried their requests");
        }
    }

    @Test
    void shouldZeroAndDiscardRangesOnTheServer() throws Exception {
        Path image = image(dir, "disk.img", 16 * MIB);
        try (NbdServer server = NbdServer.qemuNbdUnix(image, dir.resolve("nbd.sock"), "disk", "--discard=unmap");
             BlkRig rig = BlkRig.serve(open("nbd+unix:///disk?socket=" + server.socket()), 1).start()) {
            byte[] full = pattern(64 << 10, 7);
            rig.write(0, 0, full);
            rig.write(0, 256, full);
            assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, new long[] {8, 16, 0}, new long[] {100, 4, FLAG_UNMAP}));
            assertEquals(new Completion(1, OK), rig.ranges(DISCARD, new long[] {256, 128, 0}));
            byte[] want = full.clone();
            Arrays.fill(want, 8 * 512, 24 * 512, (byte) 0);
            Arrays.fill(want, 100 * 512, 104 * 512, (byte) 0);
            assertArrayEquals(want, rig.read(0, 0, full.length));
            assertArrayEquals(want, fileBytes(image, 0, full.length), "zeroes in the image file");
            assertArrayEquals(new byte[full.length], fileBytes(image, 256 * 512, full.length),
                    "qemu-nbd --discard=unmap punched the discarded range");
        }
    }

    /**
     * nbdkit enforcing a 64 KiB maximum payload (blocksize-policy refuses larger commands) and
     * logging every command it gets: larger requests arrive split, writes the guest needs durable
     * carry FUA, and write-zeroes without unmap may not punch holes.
     */
    @Test
    void shouldSplitRequestsAboveTheServersMaximumAndMarkDurableWritesFua() throws Exception {
        Path log = dir.resolve("nbdkit.log");
        try (NbdServer server = NbdServer.nbdkitUnix(dir.resolve("nbdkit.sock"), "--filter=blocksize-policy",
                "--filter=log", "memory", "8M", "blocksize-minimum=512", "blocksize-preferred=4096",
                "blocksize-maximum=65536", "blocksize-error-policy=error", "logfile=" + log);
             BlkRig rig = BlkRig.serve(open("nbd+unix:///?socket=" + server.socket()), 1)) {
            // Without FLUSH accepted the guest's cache is writethrough: every write must be durable.
            rig.start(rig.offered & ~bit((int) VIRTIO_BLK_F_FLUSH));
            byte[] data = pattern(256 << 10, 3);
            rig.write(0, 64, data);
            assertArrayEquals(data, rig.read(0, 64, data.length));
            assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, new long[] {64, 8, 0}));
            String text = Files.readString(log);
            List<String> writes = text.lines().filter(l -> l.contains(" Write id=")).toList();
            List<String> reads = text.lines().filter(l -> l.contains(" Read id=")).toList();
            assertEquals(4, writes.size(), text);
            assertTrue(writes.stream().allMatch(l -> l.contains("count=0x10000 fua=1")), text);
            for (int i = 0; i < 4; i++) {
                String offset = "offset=0x" + Long.toHexString(64 * 512 + i * 65536L) + " ";
                assertTrue(writes.stream().anyMatch(l -> l.contains(offset)), offset + " in\n" + text);
            }
            assertEquals(4, reads.size(), text);
            assertTrue(text.lines().anyMatch(l -> l.contains(" Zero id=") && l.contains(" trim=0")), text);
            assertFalse(text.contains("return=-1"), "nbdkit refused nothing:\n" + text);
        }
    }

    /**
     * After a short warm-up: the pollers allocate nothing per request, and the NBD loop next to
     * nothing (what is left is the JIT's, before it has compiled all of the path; a pooled buffer
     * per command cost 300-400 B). Here the queue has its own connection, so the poller runs the
     * NBD path too and needs the longer warm-up (300 rounds left 2.6 B per request once, of the
     * JIT's). perf's SteadyStateAllocationTest runs long enough for the strict 0 B on both paths.
     */
    @Test
    @Timeout(value = 4, unit = TimeUnit.MINUTES)
    void shouldAllocateNothingOnThePollersAndLittleOnTheNbdLoopPerRequest() throws Exception {
        Path image = image(dir, "disk.img", 16 * MIB);
        int inFlight = 32, length = 4096;
        try (NbdServer server = NbdServer.qemuNbdUnix(image, dir.resolve("nbd.sock"), "disk");
             BlkRig rig = BlkRig.serve(open("nbd+unix:///disk?socket=" + server.socket()), 1).start()) {
            // The same chains, posted again and again: 32 writes and 32 reads in flight per round.
            BlkRig.Area a = rig.area(inFlight * 2 * (length + 1024));
            Buffer[][] chains = new Buffer[2 * inFlight][];
            for (int i = 0; i < chains.length; i++) {
                boolean write = i % 2 == 0;
                long header = a.header(write ? OUT : IN, (long) i * (length / 512));
                long data = write ? a.put(pattern(length, i)) : a.room(length);
                chains[i] = new Buffer[] {Buffer.readable(header, 16), new Buffer(data, length, !write), Buffer.writable(a.status(), 1)};
            }
            Runnable round = () -> {
                for (int i = 0; i < chains.length; i++) {
                    rig.post(0, chains[i]);
                }
                rig.awaitAll(0, chains.length);
            };
            for (int i = 0; i < 800; i++) {
                round.run();
            }
            AllocatedBytes loop = AllocatedBytes.start("jvhost-nbd");
            AllocatedBytes pollers = AllocatedBytes.start("-poller-");
            int rounds = 200;
            for (int i = 0; i < rounds; i++) {
                round.run();
            }
            long requests = (long) rounds * chains.length;
            long loopBytes = loop.since(), pollerBytes = pollers.since();
            System.out.printf("NBD data path per request: %.1f bytes on the NBD loop, %.2f on the poller (%d requests)%n",
                    (double) loopBytes / requests, (double) pollerBytes / requests, requests);
            assertTrue(loop.threads() == 1 && pollers.threads() >= 1, "found the NBD loop and the poller");
            assertTrue(pollerBytes <= 2 * requests, pollerBytes + " bytes on the poller for " + requests + " requests");
            assertTrue(loopBytes <= 128 * requests, loopBytes + " bytes on the NBD loop for " + requests + " requests");
        }
    }

    /**
     * Bytes allocated by live threads whose names contain any of the given words, through
     * com.sun.management.ThreadMXBean (by reflection: this module does not read jdk.management).
     */
    record AllocatedBytes(long[] ids, long[] start) {
        static AllocatedBytes start(String... words) throws ReflectiveOperationException {
            long[] ids = Thread.getAllStackTraces().keySet().stream()
                    .filter(t -> Arrays.stream(words).anyMatch(t.getName()::contains))
                    .mapToLong(Thread::threadId).toArray();
            Class.forName("com.sun.management.ThreadMXBean").getMethod("setThreadAllocatedMemoryEnabled", boolean.class)
                    .invoke(bean(), true);
            return new AllocatedBytes(ids, read(ids));
        }

        private static Object bean() throws ReflectiveOperationException {
            return Class.forName("java.lang.management.ManagementFactory").getMethod("getThreadMXBean").invoke(null);
        }

        private static long[] read(long[] ids) throws ReflectiveOperationException {
            return (long[]) Class.forName("com.sun.management.ThreadMXBean")
                    .getMethod("getThreadAllocatedBytes", long[].class).invoke(bean(), (Object) ids);
        }

        int threads() {
            return ids.length;
        }

        String perThread() throws ReflectiveOperationException {
            long[] now = read(ids);
            StringBuilder b = new StringBuilder();
            for (int i = 0; i < ids.length; i++) {
                b.append(" thread ").append(ids[i]).append(": ").append(now[i] - start[i]);
            }
            return b.toString();
        }

        long since() throws ReflectiveOperationException {
            long[] now = read(ids);
            long sum = 0;
            for (int i = 0; i < ids.length; i++) {
                sum += now[i] - start[i];
            }
            return sum;
        }
    }

    @Test
    void shouldOfferAReadOnlyDiskWhenTheExportIsReadOnly() throws Exception {
        Path image = image(dir, "disk.img", 4 * MIB);
        try (NbdServer server = NbdServer.qemuNbdUnix(image, dir.resolve("nbd.sock"), "ro", "--read-only");
             BlkRig rig = BlkRig.serve(open("nbd+unix:///ro?socket=" + server.socket()), 1).start()) {
            assertTrue(rig.offers((int) VIRTIO_BLK_F_RO));
            assertEquals(new Completion(1, IOERR), rig.transfer(0, OUT, 0, 4096));
            assertArrayEquals(new byte[4096], rig.read(0, 0, 4096));
        }
    }

    @Test
    void shouldNameTheExportTheServerDoesNotHave() throws Exception {
        Path image = image(dir, "disk.img", 4 * MIB);
        try (NbdServer server = NbdServer.qemuNbdUnix(image, dir.resolve("nbd.sock"), "disk")) {
            NbdException e = assertThrows(NbdException.class, () -> open("nbd+unix:///nope?socket=" + server.socket()));
            assertTrue(e.getMessage().contains("no export 'nope'"), e.getMessage());
            assertFalse(e.getMessage().contains("\n"));
        }
    }

    @Test
    void shouldSayConnectionRefusedWhenNothingListens() throws Exception {
        int port = NbdServer.freePort();
        NbdException e = assertThrows(NbdException.class, () -> open("nbd://127.0.0.1:" + port + "/x"));
        assertTrue(e.getMessage().contains("Connection refused"), e.getMessage());
        NbdException u = assertThrows(NbdException.class, () -> open("nbd+unix:///x?socket=" + dir.resolve("none.sock")));
        assertTrue(u.getMessage().contains("No such file or directory"), u.getMessage());
    }

    @Test
    void shouldGiveUpOnAServerThatNeverGreetsWithinTheConnectTimeout() throws Exception {
        try (ServerSocket silent = new ServerSocket(0, 4, java.net.InetAddress.getLoopbackAddress())) {
            Thread acceptor = Thread.ofVirtual().start(() -> {
                try (Socket s = silent.accept()) {
                    s.getInputStream().read(); // holds the connection open, says nothing
                } catch (IOException ignored) {
                    // closed by the test
                }
            });
            long start = System.nanoTime();
            NbdException e = assertThrows(NbdException.class, () -> NbdStore.open(NbdStore.Options.of(
                    NbdUri.parse("nbd://127.0.0.1:" + silent.getLocalPort() + "/x"), null)
                    .withConnectTimeout(Duration.ofMillis(800))));
            long millis = (System.nanoTime() - start) / 1_000_000;
            assertTrue(e.getMessage().contains("no NBD handshake from the server within 800 ms"), e.getMessage());
            assertTrue(millis < 5000, "gave up after " + millis + " ms");
            silent.close();
            acceptor.join(5000);
        }
    }

    @Test
    void shouldServeTheDefaultExportOfNbdkitOverTcp() throws Exception {
        int port = NbdServer.freePort();
        try (NbdServer server = NbdServer.nbdkitTcp(port, "memory", "4M");
             BlkRig rig = BlkRig.serve(open("nbd://127.0.0.1:" + port), 1).start()) {
            byte[] data = pattern(8192, 9);
            rig.write(0, 2, data);
            assertArrayEquals(data, rig.read(0, 2, data.length));
            assertEquals(4 * MIB / 512, rig.capacity());
        }
    }
}
