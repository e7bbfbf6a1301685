package io.jvhost.blk;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.Frontend.Inflight;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.Footprint;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.Traffic;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.core.device.VirtioFeatures;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.api.Timeout;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * The blk device on an image file (two queues, two I/O workers) served to a hundred frontends in
 * a row, each doing what QEMU 7.2 does for a booting guest (handshake, inflight region, memory,
 * two running queues), writing sectors and reading them back, then leaving: half by stopping the
 * rings, half abruptly with writes still in the rings. Every write of every session is on the
 * image afterwards, and the process holds the fds, shared mappings and threads it held before.
 */
@Timeout(value = 5, unit = TimeUnit.MINUTES)
class BlkConnectCyclesTest {
    private static final Logger LOG = LoggerFactory.getLogger(BlkConnectCyclesTest.class);
    static final int CYCLES = 100;
    static final int QUEUE_SIZE = 128;
    static final int SECTOR = 512;
    static final long IMAGE_BYTES = 16L << 20;
    static final long LOG_ALL = VirtioFeatures.bit(VirtioFeatures.LOG_ALL);
    static final Duration USED_TIMEOUT = Duration.ofSeconds(10);
    static final int IN = 0, OUT = 1;

    /** A 4 KiB block whose bytes name the session and block, so a stale or misplaced one shows. */
    static byte[] block(int cycle, int n) {
        byte[] line = String.format("cycle %03d block %d\n", cycle, n).getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        byte[] b = new byte[4096];
        for (int i = 0; i < b.length; i++) {
            b[i] = line[i % line.length];
        }
        return b;
    }

    /** Where session {@code cycle}'s block {@code n} goes: its own 16 KiB of the image. */
    static long sector(int cycle, int n) {
        return (cycle * 4L + n) * 8;
    }

    /** Posts one request (header, data, status) and returns the status byte's gpa. */
    private static long post(DriverQueue q, GuestRam ram, int type, long sector, long dataGpa, int length) {
        long header = Traffic.place(ram, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putInt(type).putInt(0)
                .putLong(sector).array());
        long status = Traffic.place(ram, new byte[] {0x7F});
        q.post(Buffer.readable(header, 16), new Buffer(dataGpa, length, type == IN), Buffer.writable(status, 1));
        return status;
    }

    private static void awaitOk(DriverQueue q, GuestRam ram, long status) {
        Used u = q.awaitUsed(USED_TIMEOUT);
        assertNotNull(u, "request completed within " + USED_TIMEOUT);
        assertEquals(0, ram.at(status, 1).get(ValueLayout.JAVA_BYTE, 0), "status OK");
    }

    private static void session(Path socket, int cycle) throws IOException {
        try (GuestRam ram = new GuestRam(4 << 20); DriverQueue q0 = new DriverQueue(ram, 0, QUEUE_SIZE);
             DriverQueue q1 = new DriverQueue(ram, 1, QUEUE_SIZE);
             Frontend f = Frontend.connect(socket, 10_000).replyTimeout(Duration.ofSeconds(10))) {
            long offered = f.handshakeLikeQemu(2);
            f.getConfig(0, BlkDevice.CONFIG_SIZE);
            long features = (offered & ~LOG_ALL) | VirtioFeatures.bit(VirtioFeatures.PROTOCOL_FEATURES);
            try (Inflight inflight = f.getInflightFd(2, QUEUE_SIZE)) {
                assertEquals(0, f.setInflightFd(inflight));
            }
            f.startLikeQemu(features, ram, q0, q1);
            for (int n = 0; n < 2; n++) {
                DriverQueue q = n == 0 ? q0 : q1;
                byte[] data = block(cycle, n);
                awaitOk(q, ram, post(q, ram, OUT, sector(cycle, n), Traffic.place(ram, data), data.length));
                long back = ram.allocate(data.length, 8);
                awaitOk(q, ram, post(q, ram, IN, sector(cycle, n), back, data.length));
                assertArrayEquals(data, ram.at(back, data.length).toArray(ValueLayout.JAVA_BYTE), "read back");
            }
            // Two more writes per session: completed before a clean stop, or left in the rings when
            // the frontend dies (the backend finishes them or drops them with the session; either way
            // the bytes on the image are whole blocks).
            long w2 = post(q0, ram, OUT, sector(cycle, 2), Traffic.place(ram, block(cycle, 2)), 4096);
            long w3 = post(q1, ram, OUT, sector(cycle, 3), Traffic.place(ram, block(cycle, 3)), 4096);
            if (cycle % 2 == 0) {
                awaitOk(q0, ram, w2);
                awaitOk(q1, ram, w3);
                f.stopLikeQemu(q0, q1);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(value = TestDisk.Kind.class, names = {"FILE_URING", "FILE_THREADS", "FILE_INLINE"})
    void shouldHoldTheSameFdsMappingsAndThreadsAfterAHundredSessionsWithDiskIo(TestDisk.Kind kind) throws Exception {
        TestDisk.assumeAvailable(kind);
        Path dir = Files.createTempDirectory("jvhost-blk-cycles");
        Path image = dir.resolve("disk.img");
        try (RandomAccessFile raf = new RandomAccessFile(image.toFile(), "rw")) {
            raf.setLength(IMAGE_BYTES);
        }
        FileStore store = new FileStore(image, false, false, 2, kind.engine());
        Footprint before, after;
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("blk-cycles", new BlkDevice(store, 2), BackendOptions.DEFAULT, loop)) {
            backend.start();
            try (VhostUserServer server = VhostUserServer.listen(dir.resolve("blk.sock"), backend, loop)) {
                session(server.path(), 0);
                awaitSessionsEnded(server.path());
                Map<Integer, String> beforeFds = OpenFds.snapshot();
                before = Footprint.now();
                LOG.info("blk connect cycles: before {} sessions: {}", CYCLES, before);
                long t0 = System.nanoTime();
                for (int cycle = 1; cycle <= CYCLES; cycle++) {
                    session(server.path(), cycle);
                }
                awaitSessionsEnded(server.path());
                after = Footprint.awaitReturnTo(before, beforeFds, Duration.ofSeconds(30));
                LOG.info("blk connect cycles: after {} sessions ({} ms, {} chains on queue 0, {} on queue 1): {}", CYCLES,
                        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0), backend.queue(0).counters().chains,
                        backend.queue(1).counters().chains, after);
            }
        } finally {
            store.close();
        }
        byte[] disk = Files.readAllBytes(image);
        for (int cycle = 0; cycle <= CYCLES; cycle++) {
            for (int n = 0; n < 4; n++) {
                int at = (int) (sector(cycle, n) * SECTOR);
                byte[] got = Arrays.copyOfRange(disk, at, at + 4096);
                if (n < 2 || cycle % 2 == 0) {
                    assertArrayEquals(block(cycle, n), got, "cycle " + cycle + " block " + n);
                } else if (!Arrays.equals(block(cycle, n), got)) {
                    assertArrayEquals(new byte[4096], got, "cycle " + cycle + " block " + n + ": whole or untouched");
                }
            }
        }
        Files.delete(image);
        Files.deleteIfExists(dir);
    }

    /** Returns once every earlier session has ended: the server serves the next frontend only then. */
    private static void awaitSessionsEnded(Path socket) throws IOException {
        try (Frontend f = Frontend.connect(socket, 10_000).replyTimeout(Duration.ofSeconds(10))) {
            f.getFeatures();
        }
    }
}
