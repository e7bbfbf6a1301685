package io.jvhost.blk;

import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.Await;
import io.jvhost.testkit.DiskRounds;
import io.jvhost.testkit.QemuTests;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserClient;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * QEMU 7.2 listens ({@code server=on}) and a client-mode jvhost disk connects to it; while the
 * guest writes, the connection is cut several times from the backend's side
 * ({@link VhostUserClient#disconnect}) with QEMU running on. QEMU's vhost-user-blk stops the
 * device on the close and restarts it when the backend connects again (giving it the inflight
 * region it kept), so the guest sees no I/O error and the disk holds every write.
 */
@Tag("qemu")
@Timeout(value = 15, unit = TimeUnit.MINUTES)
class ClientModeDropGuestTest {
    private static final Logger LOG = LoggerFactory.getLogger(ClientModeDropGuestTest.class);
    static final int DROPS = 5;
    /** 2 MiB per round in 4 KiB O_DIRECT writes: the guest is nearly always waiting on the disk. */
    static final int BYTES = 2 << 20;

    @Test
    void shouldReconnectAndLoseNoWriteWhenTheConnectionToAListeningQemuDrops() throws Exception {
        QemuTests.requireQemu();
        Path dir = Files.createTempDirectory("jvhost-client-drop");
        Path image = dir.resolve("disk.img"), socket = dir.resolve("qemu.sock");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(BlkGuestScenario.IMAGE_BYTES);
        }
        FileStore store = new FileStore(image, false, false, 2);
        int rounds;
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("blk", new BlkDevice(store, 1), BackendOptions.DEFAULT, loop)) {
            backend.start();
            VhostUserClient client = VhostUserClient.connect(socket, backend, loop);
            try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).memoryMib(256)
                    .extraArgs("-chardev", "socket,id=blk0,path=" + socket + ",server=on,wait=on",
                            "-device", "vhost-user-blk-pci,chardev=blk0,num-queues=1")
                    .logFile(QemuTests.logFile(getClass())).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                assertEquals(1, client.connections());

                BlkGuestScenario.run(guest, DiskRounds.startCommand(BYTES));

                long before = chains(backend);
                for (int drop = 1; drop <= DROPS; drop++) {
                    long served = chains(backend);
                    if (!Await.holdsWithin(() -> chains(backend) > served + 64, Duration.ofSeconds(30))) {
                        LOG.error("client drop: stalled on connection {}: queue {} counters {}; guest dmesg:\n{}", drop,
                                backend.queue(0), backend.queue(0).counters(),
                                guest.exec("dmesg | tail -20; cat /proc/interrupts | grep -i virtio", Duration.ofMinutes(1)).output());
                        throw new AssertionError("the guest stopped writing after drop " + (drop - 1));
                    }
                    assertTrue(client.disconnect("test: connection drop " + drop), "connected when dropping");
                    int expected = drop + 1;
                    Await.until("reconnected after drop " + drop, () -> client.connections() == expected, Duration.ofSeconds(30));
                }
                long resumed = chains(backend);
                Await.until("the guest writes through the last connection", () -> chains(backend) > resumed + 64,
                        Duration.ofMinutes(1));
                BlkGuestScenario.run(guest, "touch /tmp/stop");
                String finished = "";
                long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(5);
                while (finished.isBlank() && System.nanoTime() < deadline) {
                    finished = guest.exec("cat /tmp/finished 2>/dev/null; true", Duration.ofMinutes(1)).output();
                }
                rounds = Integer.parseInt(finished.trim());
                assertEquals("", guest.exec("cat /tmp/errors 2>/dev/null; dmesg | grep -i 'i/o error'; true",
                        Duration.ofMinutes(1)).output(), "no I/O error in the guest");
                BlkGuestScenario.run(guest, "dd if=/dev/vda of=/tmp/back bs=65536 count=" + BYTES / 65536
                        + " iflag=direct 2>/dev/null && cmp /tmp/round /tmp/back"); // the last round, read back
                LOG.info("client drop: {} drops, {} connections, {} guest write rounds of {} bytes, {} requests served"
                        + " since the writer started", DROPS, client.connections(), rounds, BYTES, chains(backend) - before);
                guest.quit(Duration.ofSeconds(60));
            } finally {
                client.close();
            }
        } finally {
            store.close();
        }
        byte[] disk = Files.readAllBytes(image);
        assertArrayEquals(DiskRounds.expected(rounds, BYTES), Arrays.copyOf(disk, BYTES), "the disk holds the last round whole");
        Files.delete(image);
    }

    private static long chains(Backend backend) {
        return backend.queue(0).counters().chains;
    }
}
