package io.jvhost.blk;

import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.testkit.DevCeph;
import io.jvhost.testkit.DiskRounds;
import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Real QEMU 7.2 guests on a jvhost disk backed by a Ceph RBD image ({@link RbdStore}) on a real
 * single-node cluster (one per class): the blk guest scenario on two queues, and a one-queue disk
 * whose backend is SIGKILLed twice during guest writes and restarted. What the guest wrote is
 * checked with {@code rbd export}.
 */
@Tag("qemu")
@Tag("ceph")
@Timeout(value = 15, unit = TimeUnit.MINUTES)
class RbdGuestTest {
    static DevCeph ceph;

    @BeforeAll
    static void cluster() throws Exception {
        QemuTests.requireQemu();
        ceph = DevCeph.start(RbdGuestTest.class);
    }

    @AfterAll
    static void stopCluster() throws Exception {
        if (ceph != null) {
            ceph.close();
        }
    }

    private static void checkPatternInImage(byte[] disk) {
        for (long off : BlkGuestScenario.OFFSETS) {
            int at = (int) (off * 512);
            assertArrayEquals(BlkGuestScenario.expectedChunk(off),
                    Arrays.copyOfRange(disk, at, at + BlkGuestScenario.CHUNK_SECTORS * 512), "image bytes at sector " + off);
        }
    }

    @Test
    void shouldKeepEverySectorAndAFileSystemOnAnRbdImageWithTwoQueuesAndAnnounceAnRbdResize() throws Exception {
        String image = ceph.createImage("guest2q", BlkGuestScenario.IMAGE_BYTES);
        Path dir = Files.createTempDirectory("jvhost-rbd-guest");
        RbdStore store = RbdStore.open(ceph.conf(), null, DevCeph.POOL, "guest2q", false, Duration.ofSeconds(20));
        BlkDevice device = new BlkDevice(store, 2);
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("blk", device, BackendOptions.DEFAULT, loop)) {
            backend.start();
            try (VhostUserServer server = VhostUserServer.listen(dir.resolve("blk.sock"), backend, loop);
                 QemuGuest guest = BlkGuestScenario.boot(server.path(), getClass())) {
                BlkGuestScenario.writePattern(guest); // dd conv=fsync: each chunk is flushed to the cluster
                BlkGuestScenario.checkPatternInGuest(guest);
                checkPatternInImage(ceph.export(image));
                BlkGuestScenario.fileSystemRoundTrip(guest);

                ceph.rbd("resize", "--no-progress", "--size", BlkGuestScenario.IMAGE_BYTES * 2 / 1024 + "K", image);
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                boolean changed = false;
                while (!changed && System.nanoTime() < deadline) { // what the CLI's resize watch does each second
                    changed = device.checkResize();
                    Thread.sleep(changed ? 0 : 100);
                }
                assertTrue(changed, "the store saw the image grow");
                String sectors = String.valueOf(BlkGuestScenario.IMAGE_BYTES * 2 / 512);
                assertEquals(sectors + "\n", BlkGuestScenario.run(guest,
                        "i=0; while [ $(cat /sys/block/vda/size) != " + sectors + " ] && [ $i -lt 100 ]; do sleep 0.1;"
                                + " i=$((i+1)); done; cat /sys/block/vda/size"), "the guest saw the new capacity");
                guest.quit(Duration.ofSeconds(60));
            }
            assertTrue(backend.queue(0).counters().chains > 0 && backend.queue(1).counters().chains > 0,
                    "both queues carried requests: " + backend.queue(0).counters() + " / " + backend.queue(1).counters());
            assertEquals(0, backend.queue(0).counters().chainsRejected() + backend.queue(1).counters().chainsRejected());
        } finally {
            store.close();
        }
        assertEquals(0, store.inflight());
    }

    /** 4 MiB written in 4 KiB O_DIRECT requests per round: the guest is nearly always waiting on I/O. */
    private static final int BYTES = 4 << 20;

    @Test
    void shouldLoseNoWriteWhenTheRbdBackendIsKilledTwiceAndRestartedDuringGuestIo() throws Exception {
        String image = ceph.createImage("crash1q", BlkGuestScenario.IMAGE_BYTES);
        Path dir = Files.createTempDirectory("jvhost-rbd-crash");
        Path socket = dir.resolve("blk.sock"), log = dir.resolve("backend.log");
        Files.writeString(log, "STARTING\n");
        Process backend = RbdBackendProcess.start(socket, ceph.conf(), image, 1, log);
        int lastRound;
        long[] restartMillis = new long[2];
        try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).memoryMib(256)
                .extraArgs("-chardev", "socket,id=blk0,path=" + socket + ",reconnect=1",
                        "-device", "vhost-user-blk-pci,chardev=blk0,num-queues=1")
                .logFile(QemuTests.logFile(getClass())).build()) {
            guest.start();
            guest.awaitReady(Duration.ofMinutes(3));
            // Each round has its own pattern, so a write lost around a crash shows in the final contents.
            assertEquals(0, guest.exec(DiskRounds.startCommand(BYTES), Duration.ofMinutes(1)).exitStatus());
            for (int kill = 0; kill < 2; kill++) {
                Thread.sleep(1500); // writes under way
                backend.destroyForcibly().waitFor(10, TimeUnit.SECONDS); // SIGKILL
                long t0 = System.nanoTime();
                Files.writeString(log, "STARTING\n", StandardOpenOption.APPEND);
                backend = RbdBackendProcess.start(socket, ceph.conf(), image, 1, log);
                restartMillis[kill] = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
                String before = guest.exec("cat /tmp/progress 2>/dev/null; true", Duration.ofMinutes(2)).output().trim();
                // The guest writes on through the new backend (it waits for librbd to take over the
                // dead client's exclusive lock first).
                long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(3);
                while (guest.exec("cat /tmp/progress 2>/dev/null; true", Duration.ofMinutes(2)).output().trim().equals(before)) {
                    assertTrue(System.nanoTime() < deadline, "the guest made no progress after restart " + (kill + 1));
                    Thread.sleep(500);
                }
            }
            assertEquals(0, guest.exec("touch /tmp/stop", Duration.ofMinutes(2)).exitStatus());

            String finished = "";
            long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(5);
            while (finished.isBlank() && System.nanoTime() < deadline) {
                Thread.sleep(500);
                finished = guest.exec("cat /tmp/finished 2>/dev/null; true", Duration.ofMinutes(1)).output();
            }
            lastRound = Integer.parseInt(finished.trim());
            assertTrue(lastRound >= 3, "the guest wrote across both crashes: " + lastRound + " rounds");
            assertEquals("", guest.exec("cat /tmp/errors 2>/dev/null; dmesg | grep -i 'i/o error'; true",
                    Duration.ofMinutes(1)).output(), "no I/O error in the guest");
            // The guest flushes its disk (fsync of /dev/vda): what it wrote must now be in the cluster.
            assertEquals(0, guest.exec("dd if=/dev/null of=/dev/vda count=0 conv=notrunc,fsync 2>/dev/null",
                    Duration.ofMinutes(1)).exitStatus());
            guest.quit(Duration.ofSeconds(60));
        } finally {
            backend.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
        byte[] disk = ceph.export(image);
        assertArrayEquals(DiskRounds.expected(lastRound, BYTES), Arrays.copyOf(disk, BYTES), "the image holds the last round whole");
        String text = Files.readString(log);
        assertEquals(3, text.split("READY", -1).length - 1, "the backend started three times:\n" + text);
        System.out.println("rbd backend restarts took " + restartMillis[0] + " and " + restartMillis[1] + " ms; resubmitted: "
                + text.lines().filter(l -> l.contains("resubmitting")).toList());
    }
}
