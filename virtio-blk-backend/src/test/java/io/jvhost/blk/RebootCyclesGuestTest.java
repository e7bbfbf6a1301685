package io.jvhost.blk;

import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.Footprint;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Twenty reboots ({@code reboot -f}) of a real QEMU 7.2 guest on a two-queue jvhost disk, with
 * the guest writing its own 64 KiB per boot (O_DIRECT) and reading back what the boot before it
 * wrote. Every reboot is a driver reset for the backend (status 0, rings stopped, a fresh
 * inflight region, the memory table again, SeaBIOS's driver and then Linux's): none of it may
 * leave an fd, a mapping or a thread behind.
 *
 * <p>Footprints are taken three times: before QEMU starts (the baseline), once the first boot has
 * done its I/O (guest RAM, inflight region and the harness's QEMU pipes and reader threads are in
 * place) and after the twentieth reboot's I/O, which must equal the second exactly: the session
 * stays up across reboots, so that is the point every boot returns to. After QEMU quits, the
 * footprint must be the baseline again.
 *
 * <p>Run alone: {@code ./jvhost test -pl virtio-blk-backend -am -Dtest=RebootCyclesGuestTest
 * -Dsurefire.failIfNoSpecifiedTests=false}; the log lines starting {@code guest reboots:} carry
 * the figures.
 */
@Tag("qemu")
@Timeout(value = 20, unit = TimeUnit.MINUTES)
class RebootCyclesGuestTest {
    private static final Logger LOG = LoggerFactory.getLogger(RebootCyclesGuestTest.class);
    static final int REBOOTS = 20;
    static final Duration BOOT = Duration.ofMinutes(3);
    static final Duration SETTLE = Duration.ofSeconds(30);

    /** Boot {@code boot}'s chunk: at its own 64 KiB of the disk. */
    static long sectorOf(int boot) {
        return 4096 + boot * (long) BlkGuestScenario.CHUNK_SECTORS;
    }

    static void writeChunk(QemuGuest g, int boot) {
        long s = sectorOf(boot);
        BlkGuestScenario.run(g, BlkGuestScenario.makeChunk(s) + " && dd if=/tmp/chunk of=/dev/vda bs=65536 seek="
                + s / BlkGuestScenario.CHUNK_SECTORS + " count=1 oflag=direct conv=fsync 2>/dev/null");
    }

    static void checkChunk(QemuGuest g, int boot) {
        long s = sectorOf(boot);
        BlkGuestScenario.run(g, BlkGuestScenario.makeChunk(s) + " && dd if=/dev/vda of=/tmp/back bs=65536 skip="
                + s / BlkGuestScenario.CHUNK_SECTORS + " count=1 iflag=direct 2>/dev/null && cmp /tmp/chunk /tmp/back");
    }

    @Test
    void shouldHoldTheSameFdsMappingsAndThreadsAfterTwentyGuestRebootsWithDiskIo() throws Exception {
        QemuTests.requireQemu();
        GuestImage image = GuestImage.prepare();
        Path dir = Files.createTempDirectory("jvhost-reboots");
        Path disk = dir.resolve("disk.img");
        try (RandomAccessFile f = new RandomAccessFile(disk.toFile(), "rw")) {
            f.setLength(BlkGuestScenario.IMAGE_BYTES);
        }
        // The JDK keeps one socket open for good once a Unix-domain SocketChannel was used (the
        // harness's QEMU monitor uses one): open that before the baseline, not during the test.
        java.nio.channels.SocketChannel.open(java.net.StandardProtocolFamily.UNIX).close();
        java.util.List<String> deviceArgs = QemuConfigs.deviceArgs("blk-qemu.sh", dir.resolve("blk.sock").toString(), "2");
        FileStore store = new FileStore(disk, false, false, 2);
        Footprint baseline, booted, rebooted, quit;
        long chains;
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("blk", new BlkDevice(store, 2), BackendOptions.DEFAULT, loop);
             VhostUserServer server = startServer(backend, loop, dir)) {
            Map<Integer, String> baselineFds = OpenFds.snapshot();
            baseline = Footprint.now();
            LOG.info("guest reboots: before QEMU starts: {}", baseline);
            long t0;
            try (QemuGuest guest = QemuGuest.builder().image(image).cpus(2).memoryMib(256).extraArgs(deviceArgs)
                    .logFile(QemuTests.logFile(getClass())).build()) {
                guest.start();
                guest.awaitReady(BOOT);
                writeChunk(guest, 0);
                checkChunk(guest, 0);
                Map<Integer, String> bootedFds = OpenFds.snapshot();
                booted = Footprint.now();
                LOG.info("guest reboots: after the first boot's I/O: {}", booted);
                t0 = System.nanoTime();
                for (int boot = 1; boot <= REBOOTS; boot++) {
                    guest.reboot(BOOT);
                    checkChunk(guest, boot - 1);
                    writeChunk(guest, boot);
                }
                rebooted = Footprint.awaitReturnTo(booted, bootedFds, SETTLE);
                LOG.info("guest reboots: after {} reboots' I/O ({} s, {} connections): {}", REBOOTS,
                        TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - t0), server.connections(), rebooted);
                assertEquals(1, server.connections(), "one connection across every reboot");
                guest.quit(Duration.ofSeconds(60));
            }
            quit = Footprint.awaitReturnTo(baseline, baselineFds, SETTLE);
            LOG.info("guest reboots: after QEMU quit: {}", quit);
            chains = backend.queue(0).counters().chains + backend.queue(1).counters().chains;
        } finally {
            store.close();
        }
        LOG.info("guest reboots: {} requests served over {} boots", chains, REBOOTS + 1);
        byte[] bytes = Files.readAllBytes(disk);
        for (int boot = 0; boot <= REBOOTS; boot++) {
            int at = (int) (sectorOf(boot) * 512);
            assertArrayEquals(BlkGuestScenario.expectedChunk(sectorOf(boot)),
                    Arrays.copyOfRange(bytes, at, at + BlkGuestScenario.CHUNK_SECTORS * 512), "boot " + boot + "'s chunk");
        }
        Files.delete(disk);
        Files.deleteIfExists(dir);
    }

    private static VhostUserServer startServer(Backend backend, ControlLoop loop, Path dir) throws java.io.IOException {
        backend.start();
        return VhostUserServer.listen(dir.resolve("blk.sock"), backend, loop);
    }
}
