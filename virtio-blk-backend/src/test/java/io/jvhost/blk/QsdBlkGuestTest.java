package io.jvhost.blk;

import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.testkit.QemuTests;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The same guest scenario against qemu-storage-daemon's C vhost-user-blk export: if it passes
 * there and on jvhost, the scenario checks what a disk must do, not what jvhost happens to do.
 */
@Tag("qemu")
@Timeout(value = 15, unit = TimeUnit.MINUTES)
class QsdBlkGuestTest {

    @Test
    void shouldPassTheSameGuestScenarioOnTheCReferenceBackend() throws Exception {
        QemuTests.requireQemu();
        Path qsd = Path.of("/usr/bin/qemu-storage-daemon");
        if (!Files.isExecutable(qsd)) {
            fail("qemu-storage-daemon missing: apt-get install qemu-system-common");
        }
        Path dir = Files.createTempDirectory("jvhost-qsd");
        Path image = dir.resolve("disk.img");
        Path socket = dir.resolve("qsd.sock");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(BlkGuestScenario.IMAGE_BYTES);
        }
        Process daemon = new ProcessBuilder(List.of(qsd.toString(),
                "--blockdev", "driver=file,filename=" + image + ",node-name=n0,discard=unmap",
                "--export", "type=vhost-user-blk,id=e0,node-name=n0,addr.type=unix,addr.path=" + socket
                        + ",writable=on,num-queues=2"))
                .redirectErrorStream(true).redirectOutput(dir.resolve("qsd.log").toFile()).start();
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (!Files.exists(socket) && System.nanoTime() < deadline && daemon.isAlive()) {
                Thread.sleep(50);
            }
            assertTrue(Files.exists(socket), "qemu-storage-daemon did not listen: " + Files.readString(dir.resolve("qsd.log")));
            try (QemuGuest guest = BlkGuestScenario.boot(socket, getClass())) {
                BlkGuestScenario.writePattern(guest);
                guest.reboot(Duration.ofMinutes(3));
                BlkGuestScenario.checkPatternInGuest(guest);
                BlkGuestScenario.checkPatternOnHost(image);
                BlkGuestScenario.fileSystemRoundTrip(guest);
                guest.quit(Duration.ofSeconds(60));
            }
        } finally {
            daemon.destroy();
            daemon.waitFor(10, TimeUnit.SECONDS);
        }
    }
}
