package io.jvhost.cli;

import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A successor that dies after it took over is a crash like any other: a real QEMU 7.2 guest
 * (its disk's chardev with {@code reconnect=1}) writes 16 MiB with O_DIRECT while the disk's
 * backend is upgraded and the new process is then SIGKILLed; the same command started again finds
 * no live predecessor, starts afresh on the stale sockets, QEMU reconnects and hands it the
 * inflight region, and the guest's write completes with its data intact.
 */
@Tag("qemu")
@Timeout(value = 5, unit = TimeUnit.MINUTES)
class LiveUpgradeCrashGuestTest {
    private static final int MIB = 16;

    @TempDir
    Path dir;

    @Test
    void shouldSaveTheGuestsWritesThroughReconnectWhenTheSuccessorDiesAfterTakingOver() throws Exception {
        QemuTests.requireQemu();
        Path image = dir.resolve("disk.img"), socket = dir.resolve("blk.sock");
        try (var f = new java.io.RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(32L << 20);
        }
        String[] blk = {"blk", "--file", image.toString(), "--socket", socket.toString(), "--handover", dir.resolve("blk.handover").toString()};
        try (UpgradeRig cli = new UpgradeRig(dir, Duration.ofMinutes(3))) {
            CliProcess first = cli.start(blk).await(CliProcess.READY, Duration.ofSeconds(30));
            try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).cpus(1).memoryMib(256)
                    .extraArgs("-chardev", "socket,id=blk0,path=" + socket + ",reconnect=1",
                            "-device", "vhost-user-blk-pci,chardev=blk0,num-queues=1")
                    .logFile(QemuTests.logFile(getClass())).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                cli.exec(guest, "dd if=/dev/urandom of=/tmp/pattern bs=1M count=" + MIB + " 2>/dev/null");
                String md5 = cli.exec(guest, "md5sum < /tmp/pattern").strip().split("\\s+")[0];
                // 16 steps of 1 MiB (16 KiB O_DIRECT writes), a pause after each: about 5 s of writing.
                cli.exec(guest, "(i=0; rc=0; while [ $i -lt " + MIB + " ]; do dd if=/tmp/pattern of=/dev/vda bs=16k count=64"
                        + " skip=$((i*64)) seek=$((i*64)) oflag=direct 2>>/tmp/dd.err || rc=1; sleep 0.3; i=$((i+1)); done;"
                        + " echo $rc > /tmp/dd.rc) &");

                CliProcess second = cli.start(blk).await("took over from pid " + first.process.pid(), Duration.ofSeconds(60));
                assertTrue(first.process.waitFor(30, TimeUnit.SECONDS), first.output());
                assertEquals(0, first.process.exitValue(), first.output());
                Thread.sleep(500); // let it serve some of the writes
                second.process.destroyForcibly(); // SIGKILL, requests in flight or not
                assertTrue(second.process.waitFor(10, TimeUnit.SECONDS));
                Thread.sleep(300);
                CliProcess third = cli.start(blk).await(CliProcess.READY, Duration.ofSeconds(30));
                assertTrue(!third.output().contains("taking over"), "no live predecessor: it starts afresh\n" + third.output());

                String done = cli.exec(guest, "while [ ! -e /tmp/dd.rc ]; do sleep 1; done; cat /tmp/dd.rc; grep -c '64+0 records out' /tmp/dd.err");
                assertEquals("0\n" + MIB, done.strip(), "every write succeeded:\n" + done + cli.exec(guest, "cat /tmp/dd.err"));
                assertEquals(md5, cli.exec(guest, "dd if=/dev/vda bs=1M count=" + MIB + " iflag=direct 2>/dev/null | md5sum")
                        .strip().split("\\s+")[0], "the guest reads back what it wrote");
                assertEquals(md5, LiveUpgradeGuestTest.md5OfImage(image, (long) MIB << 20), "the image holds it");
                assertTrue(third.output().contains("frontend connected"), "QEMU reconnected to the new process:\n" + third.output());
                guest.quit(Duration.ofSeconds(60));
                assertEquals(0, third.terminate(), third.output());
            }
        }
    }
}
