package io.jvhost.cli;

import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What a live upgrade does when the successor is not fit to take over, under a real QEMU 7.2
 * guest with two disks: a {@code jvhost blk --ram} and a {@code jvhost serve --config} holding a
 * RAM disk and an rng. A successor with other device options, or serving other sockets, is refused
 * before anything pauses; one that fails after the old process paused (fault injection) leaves the
 * old one serving again. Then a fit successor of each takes over, RAM disk contents included: the
 * guest reads back everything it wrote, and QEMU keeps its sockets and logs nothing. One boot.
 */
@Tag("qemu")
@Timeout(value = 6, unit = TimeUnit.MINUTES)
class LiveUpgradeRefusalsGuestTest {
    @TempDir
    Path dir;

    @Test
    void shouldRefuseUnfitSuccessorsAndResumeAfterOneFailsThenHandRamDisksAndAServeProcessOver() throws Exception {
        QemuTests.requireQemu();
        Path blkSock = dir.resolve("blk.sock"), diskSock = dir.resolve("disk2.sock"), rngSock = dir.resolve("rng.sock");
        String[] blk = {"blk", "--ram", "64M", "--socket", blkSock.toString(), "--handover", dir.resolve("blk.handover").toString()};
        Path config = dir.resolve("serve.yaml");
        Files.writeString(config, "handover: " + dir.resolve("serve.handover") + "\n"
                + "devices:\n"
                + "  - {type: blk, name: disk2, ram: 32M, socket: " + diskSock + "}\n"
                + "  - {type: rng, socket: " + rngSock + "}\n");
        String[] serve = {"serve", "--config", config.toString()};
        try (UpgradeRig cli = new UpgradeRig(dir, Duration.ofMinutes(2))) {
            CliProcess oldBlk = cli.start(blk).await(CliProcess.READY, Duration.ofSeconds(30));
            CliProcess oldServe = cli.start(serve).await(CliProcess.READY, Duration.ofSeconds(30));
            List<String> args = new ArrayList<>(QemuConfigs.deviceArgs("blk-qemu.sh", blkSock.toString(), "1"));
            args.addAll(List.of("-chardev", "socket,id=disk2,path=" + diskSock, "-device", "vhost-user-blk-pci,chardev=disk2,num-queues=1"));
            args.addAll(QemuConfigs.deviceArgs("rng-qemu.sh", rngSock.toString()));
            try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).cpus(1).memoryMib(256).extraArgs(args)
                    .logFile(QemuTests.logFile(getClass())).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                cli.exec(guest, "dd if=/dev/urandom of=/tmp/a bs=1M count=8 2>/dev/null && dd if=/dev/urandom of=/tmp/b bs=1M count=8 2>/dev/null"
                        + " && dd if=/tmp/a of=/dev/vda bs=64k oflag=direct 2>/dev/null && dd if=/tmp/a of=/dev/vdb bs=64k oflag=direct 2>/dev/null");
                String qemuSaid = guest.stderr();
                java.util.Set<String> sockets = LiveUpgradeGuestTest.socketInodes(guest.pid());

                CliProcess otherQueues = cli.start("blk", "--ram", "64M", "--queues", "2", "--socket", blkSock.toString(),
                        "--handover", dir.resolve("blk.handover").toString());
                assertEquals(1, exit(otherQueues), otherQueues.output());
                // Two queues offer MQ: the first difference the refusal names is in the features.
                assertTrue(otherQueues.output().contains(blkSock + ": the running device has features 0x")
                        && otherQueues.output().contains("(give the same device options)"), otherQueues.output());
                CliProcess otherSocket = cli.start("blk", "--ram", "64M", "--socket", dir.resolve("other.sock").toString(),
                        "--handover", dir.resolve("blk.handover").toString());
                assertEquals(1, exit(otherSocket), otherSocket.output());
                assertTrue(otherSocket.output().contains(blkSock + ", which this command does not"), otherSocket.output());
                CliProcess failing = cli.start(Map.of("JAVA_TOOL_OPTIONS", "-Djvhost.handover.fail-after-replay=true"), blk);
                assertEquals(1, exit(failing), failing.output());
                assertTrue(failing.output().contains("failing on purpose after the replay"), failing.output());
                assertTrue(oldBlk.process.isAlive(), oldBlk.output());
                assertTrue(oldBlk.output().contains("serving on"), "the old process says it serves on:\n" + oldBlk.output());

                // The old process serves again: a write after the failed upgrade goes through it.
                cli.exec(guest, "dd if=/tmp/b of=/dev/vda bs=64k seek=128 oflag=direct 2>/dev/null");

                CliProcess newBlk = cli.start(blk).await("took over from pid " + oldBlk.process.pid(), Duration.ofSeconds(60));
                CliProcess newServe = cli.start(serve).await("took over from pid " + oldServe.process.pid(), Duration.ofSeconds(60));
                for (CliProcess old : List.of(oldBlk, oldServe)) {
                    assertTrue(old.process.waitFor(30, TimeUnit.SECONDS), old.output());
                    assertEquals(0, old.process.exitValue(), old.output());
                }
                newBlk.await(CliProcess.READY, Duration.ofSeconds(10));
                newServe.await(CliProcess.READY, Duration.ofSeconds(10));

                String sums = cli.exec(guest, "cat /tmp/a /tmp/b | md5sum; dd if=/dev/vda bs=1M count=16 iflag=direct 2>/dev/null | md5sum;"
                        + " md5sum < /tmp/a; dd if=/dev/vdb bs=1M count=8 iflag=direct 2>/dev/null | md5sum;"
                        + " dd if=/dev/hwrng of=/dev/null bs=64 count=4 2>/dev/null && echo rng-ok");
                List<String> lines = sums.lines().map(l -> l.split("\\s+")[0]).toList();
                assertEquals(lines.get(0), lines.get(1), "the RAM disk of blk kept what was written before and after the failed upgrade:\n" + sums);
                assertEquals(lines.get(2), lines.get(3), "serve's RAM disk kept its contents:\n" + sums);
                assertTrue(sums.contains("rng-ok"), sums);
                assertEquals(sockets, LiveUpgradeGuestTest.socketInodes(guest.pid()), "QEMU keeps the same sockets: no reconnect");
                assertEquals(qemuSaid, guest.stderr(), "QEMU logged nothing");
                guest.quit(Duration.ofSeconds(60));
            }
        }
    }

    private static int exit(CliProcess p) throws Exception {
        assertTrue(p.process.waitFor(60, TimeUnit.SECONDS), "still running:\n" + p.output());
        return p.process.exitValue();
    }
}
