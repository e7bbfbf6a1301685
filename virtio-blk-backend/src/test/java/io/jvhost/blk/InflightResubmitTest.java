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
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A backend process dies (SIGKILL) with writes in flight; the frontend reconnects to a new one and
 * hands it the same inflight region, as QEMU 7.2 does: every write left in flight is resubmitted
 * exactly once and lands on the disk. On split rings and on packed ones, where QEMU resends the
 * base of its last start (it cannot know a packed ring's position) and the region's packed layout
 * tells the new backend where the ring stands.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class InflightResubmitTest {
    private static final int QUEUE_SIZE = 16, WRITES = 3;
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldResubmitEveryWriteLeftInFlightByAKilledBackendExactlyOnce(DriverQueue.Layout layout) throws Exception {
        boolean packed = layout == DriverQueue.Layout.PACKED;
        Path dir = Files.createTempDirectory("jvhost-inflight");
        Path image = dir.resolve("disk.img"), socket = dir.resolve("blk.sock"), log = dir.resolve("backend.log");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(1 << 20);
        }
        Files.writeString(log, "STARTING\n");
        Process first = BackendProcess.start(socket, image, 1, log, "--stall-writes");
        try (GuestRam ram = new GuestRam(8 << 20); DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE, layout)) {
            long firstBase = Integer.toUnsignedLong(q.base());
            long[] status = new long[WRITES];
            Frontend.Inflight inflight;
            try (Frontend fe = Frontend.connect(socket, 10_000)) {
                long features = fe.handshakeLikeQemu(1);
                if (packed) { // QEMU 7.2 sends the features first (vhost_dev_prepare_inflight): the region's layout follows them
                    assertEquals(0, fe.setFeatures(VirtioFeatures.bit(VirtioFeatures.VERSION_1)
                            | VirtioFeatures.bit(VirtioFeatures.RING_PACKED) | VirtioFeatures.bit(VirtioFeatures.PROTOCOL_FEATURES)));
                }
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
                if (packed) {
                    assertFalse(q.hasUsed(), "nothing was completed before the crash");
                } else {
                    assertEquals(0, q.usedIdx(), "nothing was completed before the crash");
                }
            }

            Files.writeString(log, "STARTING\n", java.nio.file.StandardOpenOption.APPEND);
            Process second = BackendProcess.start(socket, image, 1, log);
            try (Frontend fe = Frontend.connect(socket, 10_000); inflight) {
                long features = fe.handshakeLikeQemu(1);
                assertEquals(0, fe.setInflightFd(inflight)); // the old region, not a fresh one
                fe.startLikeQemu(features & (VirtioFeatures.bit(VirtioFeatures.VERSION_1)
                        | VirtioFeatures.bit(VirtioFeatures.RING_INDIRECT_DESC)), ram, new long[] {firstBase}, q);
                q.kick();
                Set<Integer> heads = new HashSet<>();
                for (int i = 0; i < WRITES; i++) {
                    DriverQueue.Used u = q.awaitUsed(Duration.ofSeconds(20));
                    assertNotNull(u, "write " + i + " completed by the new backend");
                    assertTrue(heads.add(u.id()), "head " + u.id() + " completed twice");
                }
                // Split: heads of 3 descriptors each; packed: buffer ids.
                assertEquals(packed ? Set.of(0, 1, 2) : Set.of(0, 3, 6), heads, "the three chains left in flight");
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

    /**
     * Packed, and the crash comes after the new backend completed the resubmitted writes and more:
     * a third backend resumes where the second left the ring, not at QEMU's base, and new writes go on.
     */
    @Test
    void shouldResumeAPackedRingWhereTheInflightRegionSaysAfterASecondCrash() throws Exception {
        Path dir = Files.createTempDirectory("jvhost-inflight");
        Path image = dir.resolve("disk.img"), socket = dir.resolve("blk.sock"), log = dir.resolve("backend.log");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(1 << 20);
        }
        Files.writeString(log, "STARTING\n");
        try (GuestRam ram = new GuestRam(8 << 20); DriverQueue q = DriverQueue.packed(ram, 0, QUEUE_SIZE)) {
            long firstBase = Integer.toUnsignedLong(q.base());
            Frontend.Inflight inflight = null;
            for (int round = 0; round < 3; round++) {
                Process p = BackendProcess.start(socket, image, 1, log);
                try (Frontend fe = Frontend.connect(socket, 10_000)) {
                    long features = fe.handshakeLikeQemu(1);
                    if (inflight == null) { // after SET_FEATURES, as QEMU 7.2 does: a packed region
                        assertEquals(0, fe.setFeatures(VirtioFeatures.bit(VirtioFeatures.VERSION_1)
                                | VirtioFeatures.bit(VirtioFeatures.RING_PACKED) | VirtioFeatures.bit(VirtioFeatures.PROTOCOL_FEATURES)));
                        inflight = fe.getInflightFd(1, QUEUE_SIZE);
                    }
                    assertEquals(0, fe.setInflightFd(inflight));
                    fe.startLikeQemu(features & VirtioFeatures.bit(VirtioFeatures.VERSION_1), ram, new long[] {firstBase}, q);
                    for (int i = 0; i < 7; i++) { // 7 chains of 3 descriptors a round: the ring wraps in round 1
                        long header = ram.allocate(16, 16), data = ram.allocate(512, 512), status = ram.allocate(1, 1);
                        ram.at(header, 16).set(LE_INT, 0, BlkQueueHandler.T_OUT);
                        ram.at(header, 16).set(LE_LONG, 8, 7L * round + i);
                        ram.at(data, 512).fill((byte) (7 * round + i));
                        q.post(Buffer.readable(header, 16), Buffer.readable(data, 512), Buffer.writable(status, 1));
                        assertNotNull(q.awaitUsed(Duration.ofSeconds(20)), "round " + round + " write " + i);
                        assertEquals(0, ram.at(status, 1).get(ValueLayout.JAVA_BYTE, 0), "status OK");
                    }
                } finally {
                    p.destroyForcibly().waitFor(10, TimeUnit.SECONDS); // SIGKILL: QEMU keeps its first base
                    Files.writeString(log, "STARTING\n", java.nio.file.StandardOpenOption.APPEND);
                }
            }
            inflight.close();
        }
        byte[] disk = Files.readAllBytes(image);
        for (int s = 0; s < 21; s++) {
            assertEquals((byte) s, disk[s * 512 + 100], "sector " + s);
        }
        assertTrue(Files.readString(log).contains("resuming as the region says"), Files.readString(log));
    }
}
