package io.jvhost.blk;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.device.VirtioFeatures;

import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A backend process dies (SIGKILL) with writes in flight; the frontend reconnects to a new one and
 * hands it the same inflight region, as QEMU 7.2 does: every write left in flight is resubmitted
 * exactly once and lands on the disk.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class InflightResubmitTest {
    private static final int QUEUE_SIZE = 16, WRITES = 3;
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @Test
    void shouldResubmitEveryWriteLeftInFlightByAKilledBackendExactlyOnce() throws Exception {
        Path dir = Files.createTempDirectory("jvhost-inflight");
        Path image = dir.resolve("disk.img"), socket = dir.resolve("blk.sock"), log = dir.resolve("backend.log");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(1 << 20);
        }
        Files.writeString(log, "STARTING\n");
        Process first = BackendProcess.start(socket, image, 1, log, "--stall-writes");
        try (GuestRam ram = new GuestRam(8 << 20); DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE)) {
            long[] status = new long[WRITES];
            Frontend.Inflight inflight;
            try (Frontend fe = Frontend.connect(socket, 10_000)) {
                long features = fe.handshakeLikeQemu(1);
                inflight = fe.getInflightFd(1, QUEUE_SIZE);
                assertEquals(0, fe.setInflightFd(inflight));
                fe.startLikeQemu(features & (VirtioFeatures.bit(VirtioFeatures.VERSION_1)
                        | VirtioFeatures.bit(VirtioFeatures.RING_INDIRECT_DESC)), ram, q);
                for (int i = 0; i < WRITES; i++) {
                    long header = ram.allocate(16, 16), data = ram.allocate(4096, 4096);
                    status[i] = ram.allocate(1, 1);
                    ram.at(header, 16).set(LE_INT, 0, BlkQueueHandler.T_OUT);
                    ram.at(header, 16).set(LE_LONG, 8, 8L * (i + 1));
                    ram.at(data, 4096).fill((byte) ('A' + i));
                    ram.at(status[i], 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
                    q.post(Buffer.readable(header, 16), Buffer.readable(data, 4096), Buffer.writable(status[i], 1));
                }
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                while (Files.readString(log).split("STALLED", -1).length - 1 < WRITES && System.nanoTime() < deadline) {
                    Thread.sleep(20);
                }
                first.destroyForcibly().waitFor(10, TimeUnit.SECONDS); // SIGKILL with 3 writes in flight
                assertEquals(0, q.usedIdx(), "nothing was completed before the crash");
            }

            Files.writeString(log, "STARTING\n", java.nio.file.StandardOpenOption.APPEND);
            Process second = BackendProcess.start(socket, image, 1, log);
            try (Frontend fe = Frontend.connect(socket, 10_000); inflight) {
                long features = fe.handshakeLikeQemu(1);
                assertEquals(0, fe.setInflightFd(inflight)); // the old region, not a fresh one
                fe.startLikeQemu(features & (VirtioFeatures.bit(VirtioFeatures.VERSION_1)
                        | VirtioFeatures.bit(VirtioFeatures.RING_INDIRECT_DESC)), ram, q);
                q.kick();
                Set<Integer> heads = new HashSet<>();
                for (int i = 0; i < WRITES; i++) {
                    DriverQueue.Used u = q.awaitUsed(Duration.ofSeconds(20));
                    assertNotNull(u, "write " + i + " completed by the new backend");
                    assertTrue(heads.add(u.id()), "head " + u.id() + " completed twice");
                }
                assertEquals(Set.of(0, 3, 6), heads, "the three chains left in flight"); // 3 descriptors each
                assertNull(q.awaitUsed(Duration.ofMillis(500)), "each write completed exactly once");
                for (int i = 0; i < WRITES; i++) {
                    assertEquals(0, ram.at(status[i], 1).get(ValueLayout.JAVA_BYTE, 0), "status OK");
                }
            } finally {
                second.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        } finally {
            first.destroyForcibly();
        }
        byte[] disk = Files.readAllBytes(image);
        for (int i = 0; i < WRITES; i++) {
            for (int b = 0; b < 4096; b++) {
                assertEquals('A' + i, disk[(i + 1) * 4096 + b], "write " + i + " on disk");
            }
        }
        assertTrue(Files.readString(log).contains("resubmitting 3 requests"), Files.readString(log));
    }
}
