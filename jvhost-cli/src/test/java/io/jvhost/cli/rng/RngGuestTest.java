package io.jvhost.cli.rng;

import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.GuestVirtio;
import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.core.ring.QueueCounters;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer.OrderAnnotation;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A real QEMU 7.2 guest (TCG) reads entropy through {@code vhost-user-rng-pci} from one jvhost rng
 * backend, which outlives a guest reboot (driver reset) and QEMU itself restarting: the second QEMU
 * gives the device packed virtqueues ({@code packed=on}), so the same backend serves a split ring,
 * then a packed one.
 */
@Tag("qemu")
@Timeout(value = 10, unit = TimeUnit.MINUTES)
@TestMethodOrder(OrderAnnotation.class)
class RngGuestTest {
    private static final Duration BOOT = Duration.ofMinutes(3);
    private static final Duration COMMAND = Duration.ofMinutes(2);
    /** Reads 64 KiB from the device, prints its size, checksum and number of distinct byte values. */
    private static final String READ_64K = "head -c 65536 /dev/hwrng > /tmp/r && wc -c < /tmp/r && md5sum < /tmp/r"
            + " && od -An -v -tu1 /tmp/r | tr -s ' ' '\\n' | grep -v '^$' | sort -u | wc -l";

    private static Path dir;
    private static ControlLoop loop;
    private static Backend backend;
    private static VhostUserServer server;
    private static QemuGuest guest;
    private static String firstChecksum;

    @BeforeAll
    static void startBackendAndGuest() throws Exception {
        QemuTests.requireQemu();
        dir = Files.createTempDirectory("jvhost-rng-test");
        loop = new ControlLoop();
        backend = new Backend("rng", new RngDevice(), BackendOptions.DEFAULT, loop);
        backend.start();
        server = VhostUserServer.listen(dir.resolve("rng.sock"), backend, loop);
        guest = bootGuest(false);
    }

    private static QemuGuest bootGuest(boolean packed) throws Exception {
        QemuGuest g = QemuGuest.builder().image(GuestImage.prepare()).memoryMib(256)
                .extraArgs(QemuConfigs.deviceArgs(packed, "rng-qemu.sh", dir.resolve("rng.sock").toString()))
                .logFile(QemuTests.logFile(RngGuestTest.class)).build();
        g.start();
        g.awaitReady(BOOT);
        return g;
    }

    @AfterAll
    static void stopAll() {
        if (guest != null) {
            guest.close();
        }
        if (server != null) {
            server.close();
        }
        if (backend != null) {
            backend.close();
        }
        if (loop != null) {
            loop.close();
        }
    }

    /** Reads 64 KiB in the guest, checks it is full-size and far from constant, returns its checksum. */
    private static String readEntropy() {
        long before = counters().bytesWritten;
        QemuGuest.Result r = guest.exec(READ_64K, COMMAND);
        assertEquals(0, r.exitStatus(), r.output());
        String[] lines = r.output().trim().split("\\s*\\n\\s*");
        assertEquals("65536", lines[0], r.output());
        int distinctBytes = Integer.parseInt(lines[2].trim());
        assertTrue(distinctBytes >= 250, "64 KiB of entropy should use nearly all 256 byte values, got " + distinctBytes);
        assertTrue(counters().bytesWritten - before >= 65536, "the backend served the bytes: " + counters());
        assertEquals(0, counters().chainsRejected(), counters().toString());
        return lines[1];
    }

    private static QueueCounters counters() {
        return backend.queue(0).counters();
    }

    @Test
    @Order(1)
    void shouldServe64KiBOfNonConstantEntropyToTheGuest() {
        assertEquals("virtio_rng.0", guest.exec("cat /sys/class/misc/hw_random/rng_current", COMMAND).output().trim());
        assertFalse(GuestVirtio.ringPacked(guest, GuestVirtio.ENTROPY), "a split ring without packed=on");
        firstChecksum = readEntropy();
        assertNotEquals(firstChecksum, readEntropy(), "two reads returned the same bytes");
    }

    @Test
    @Order(2)
    void shouldKeepServingAfterTheGuestReboots() {
        guest.reboot(BOOT);
        assertNotEquals(firstChecksum, readEntropy());
    }

    @Test
    @Order(3)
    void shouldServeANewQemuProcessOnPackedVirtqueuesAfterTheOldOneQuits() throws Exception {
        long connections = server.connections();
        guest.quit(Duration.ofSeconds(60));
        guest.close();
        guest = bootGuest(true);
        assertEquals(connections + 1, server.connections());
        assertTrue(GuestVirtio.ringPacked(guest, GuestVirtio.ENTROPY), "the guest negotiated VIRTIO_F_RING_PACKED (bit 34)");
        assertNotEquals(firstChecksum, readEntropy());
        assertTrue(backend.queue(0).isPacked(), "the backend ran the queue packed");
        guest.reboot(BOOT);
        assertNotEquals(firstChecksum, readEntropy(), "packed again after the guest's driver reset");
    }
}
