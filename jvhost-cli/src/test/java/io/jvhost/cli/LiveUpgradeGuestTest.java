package io.jvhost.cli;

import io.jvhost.testkit.HostCommands;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Live upgrade under a real QEMU 7.2 guest (TCG): a disk (an image file), an rng and a NIC on a
 * TAP, each served by a {@code jvhost ... --handover PATH} process, are each upgraded twice by
 * running the same command again, while the guest writes 48 MiB with O_DIRECT, reads the rng and
 * pings the TAP's far side as fast as replies come. Each old process exits 0; the guest sees no
 * error, its data is intact (read back in the guest and from the image on the host), the ping
 * loses at most a few packets, and QEMU keeps the very same sockets and logs nothing. One boot.
 */
@Tag("qemu")
@Timeout(value = 8, unit = TimeUnit.MINUTES)
class LiveUpgradeGuestTest {
    private static final String NS = "jvhost-upgrade", TAP = "jvtap-upg0";
    private static final String HOST_IP = "10.211.0.1", GUEST_IP = "10.211.0.2";
    private static final Pattern SOCKET_INODE = Pattern.compile("socket:\\[(\\d+)]");
    private static final int MIB = 48;
    /** Pings the guest may lose while its NIC changes hands twice (none were lost in our runs; the frames wait in the TAP and the rings). */
    private static final int MAX_LOST_PINGS = 5;

    @TempDir
    Path dir;

    @Test
    void shouldUpgradeDiskRngAndNicTwiceWhileTheGuestUsesThemWithoutTheGuestOrQemuNoticing() throws Exception {
        QemuTests.requireQemu();
        Path image = dir.resolve("disk.img");
        try (var f = new java.io.RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(64L << 20);
        }
        new ProcessBuilder("ip", "netns", "delete", NS).start().waitFor(10, TimeUnit.SECONDS); // a leftover run
        Map<String, String[]> commands = Map.of(
                "blk", new String[] {"blk", "--file", image.toString(), "--socket", dir.resolve("blk.sock").toString(),
                        "--handover", dir.resolve("blk.handover").toString()},
                "rng", new String[] {"rng", "--socket", dir.resolve("rng.sock").toString(),
                        "--handover", dir.resolve("rng.handover").toString()},
                "net", new String[] {"net", "--tap", TAP, "--socket", dir.resolve("net.sock").toString(),
                        "--handover", dir.resolve("net.handover").toString()});
        Map<String, CliProcess> serving = new java.util.HashMap<>();
        try (UpgradeRig cli = new UpgradeRig(dir, Duration.ofMinutes(1))) {
            for (String kind : List.of("blk", "rng", "net")) {
                serving.put(kind, cli.start(commands.get(kind)).await(CliProcess.READY, Duration.ofSeconds(30)));
            }
            HostCommands.run("ip", "netns", "add", NS);
            HostCommands.run("ip", "link", "set", TAP, "netns", NS);
            HostCommands.run("ip", "netns", "exec", NS, "ip", "addr", "add", HOST_IP + "/24", "dev", TAP);
            HostCommands.run("ip", "netns", "exec", NS, "ip", "link", "set", TAP, "up");

            List<String> args = new ArrayList<>(QemuConfigs.deviceArgs("blk-qemu.sh", dir.resolve("blk.sock").toString(), "1"));
            args.addAll(QemuConfigs.deviceArgs("rng-qemu.sh", dir.resolve("rng.sock").toString()));
            args.addAll(QemuConfigs.deviceArgs("net-qemu.sh", dir.resolve("net.sock").toString(), "52:54:00:00:00:41", "1"));
            try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).cpus(1).memoryMib(384).extraArgs(args)
                    .logFile(QemuTests.logFile(getClass())).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                QemuGuest.Result setup = guest.exec("ip link set eth0 up && ip addr add " + GUEST_IP + "/24 dev eth0 && ping -c 2 -W 5 "
                        + HOST_IP + " && dd if=/dev/urandom of=/tmp/pattern bs=1M count=" + MIB + " 2>/dev/null", Duration.ofMinutes(2));
                assertEquals(0, setup.exitStatus(), setup.output());
                String qemuSaid = guest.stderr(); // its warnings at start (F_CONFIG) are not about the upgrades
                String md5 = guest.exec("md5sum < /tmp/pattern", Duration.ofMinutes(1)).output().strip().split("\\s+")[0];
                Set<String> sockets = socketInodes(guest.pid());

                // The load, for about 15 s: 48 MiB written in 1 MiB steps of 16 KiB O_DIRECT writes with a pause after each,
                // 256 bytes from the rng per step, and a ping that sends as soon as a reply comes (stopped after the last step).
                assertEquals(0, guest.exec("(ping -A -W 5 " + HOST_IP + " > /tmp/ping.out 2>&1 & p=$!; i=0; rc=0;"
                        + " while [ $i -lt " + MIB + " ]; do"
                        + " dd if=/tmp/pattern of=/dev/vda bs=16k count=64 skip=$((i*64)) seek=$((i*64)) oflag=direct 2>>/tmp/dd.err || rc=1;"
                        + " dd if=/dev/hwrng of=/dev/null bs=64 count=4 2>/dev/null || rc=2; sleep 0.3; i=$((i+1)); done;"
                        + " kill -INT $p; wait $p; echo $rc > /tmp/dd.rc) &", Duration.ofMinutes(1)).exitStatus());

                for (int round = 1; round <= 2; round++) {
                    Map<String, CliProcess> next = new java.util.HashMap<>();
                    for (String kind : List.of("blk", "rng", "net")) { // all three at once: the guest uses each meanwhile
                        next.put(kind, cli.start(commands.get(kind)));
                    }
                    for (String kind : List.of("blk", "rng", "net")) {
                        CliProcess old = serving.get(kind);
                        next.get(kind).await("took over from pid " + old.process.pid(), Duration.ofSeconds(60));
                        assertTrue(old.process.waitFor(30, TimeUnit.SECONDS), kind + " round " + round + ": the old process exits:\n"
                                + old.output());
                        assertEquals(0, old.process.exitValue(), old.output());
                        assertTrue(old.output().contains("handed over to a successor"), old.output());
                        serving.put(kind, next.get(kind).await(CliProcess.READY, Duration.ofSeconds(10)));
                    }
                    QemuGuest.Result dd = guest.exec("if [ -e /tmp/dd.rc ]; then echo 999; else grep -c 'records out' /tmp/dd.err; fi",
                            Duration.ofMinutes(1));
                    System.out.printf("live upgrade round %d done: %s MiB of %d written so far%n", round, dd.output().strip(), MIB);
                    assertTrue(Integer.parseInt(dd.output().strip()) < MIB, "the 48 MiB write still runs after upgrade round " + round);
                }

                String done = guest.exec("while [ ! -e /tmp/dd.rc ]; do sleep 1; done; cat /tmp/dd.rc;"
                        + " grep -c '64+0 records out' /tmp/dd.err; tail -n 3 /tmp/ping.out", Duration.ofMinutes(4)).output();
                assertTrue(done.startsWith("0\n" + MIB + "\n"), "every O_DIRECT write and rng read succeeded:\n" + done
                        + guest.exec("cat /tmp/dd.err", Duration.ofMinutes(1)).output());
                Matcher ping = Pattern.compile("(\\d+) packets transmitted, (\\d+) packets received").matcher(done);
                assertTrue(ping.find(), done);
                int lost = Integer.parseInt(ping.group(1)) - Integer.parseInt(ping.group(2));
                System.out.printf("live upgrade: ping lost %d of %s packets over 6 upgrades%n", lost, ping.group(1));
                assertTrue(lost <= MAX_LOST_PINGS, done);

                String readBack = guest.exec("dd if=/dev/vda bs=1M count=" + MIB + " iflag=direct 2>/dev/null | md5sum",
                        Duration.ofMinutes(2)).output().strip().split("\\s+")[0];
                assertEquals(md5, readBack, "the guest reads back what it wrote");
                assertEquals(md5, md5OfImage(image, (long) MIB << 20), "the image on the host holds what the guest wrote");
                assertEquals(sockets, socketInodes(guest.pid()), "QEMU keeps the same sockets: no reconnect");
                assertEquals(qemuSaid, guest.stderr(), "QEMU logged nothing during the upgrades");
                assertEquals(0, guest.exec("dd if=/dev/hwrng of=/dev/null bs=64 count=4 2>/dev/null", Duration.ofMinutes(1)).exitStatus(),
                        "the rng still serves");
                guest.quit(Duration.ofSeconds(60));
            }
            for (CliProcess p : serving.values()) {
                assertEquals(0, p.terminate(), p.output());
            }
        } finally {
            new ProcessBuilder("ip", "netns", "delete", NS).start().waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** The socket inodes among {@code pid}'s open fds: the same set means the same connections. */
    static Set<String> socketInodes(long pid) throws Exception {
        Set<String> inodes = new TreeSet<>();
        try (var fds = Files.list(Path.of("/proc", Long.toString(pid), "fd"))) {
            for (Path fd : fds.toList()) {
                try {
                    Matcher m = SOCKET_INODE.matcher(Files.readSymbolicLink(fd).toString());
                    if (m.matches()) {
                        inodes.add(m.group(1));
                    }
                } catch (java.io.IOException e) {
                    // closed meanwhile
                }
            }
        }
        assertTrue(inodes.size() >= 3, "QEMU has a socket per device: " + inodes);
        return inodes;
    }

    static String md5OfImage(Path image, long bytes) throws Exception {
        MessageDigest md = MessageDigest.getInstance("MD5");
        try (InputStream in = Files.newInputStream(image)) {
            byte[] buf = new byte[1 << 20];
            long left = bytes;
            while (left > 0) {
                int n = in.read(buf, 0, (int) Math.min(buf.length, left));
                md.update(buf, 0, n);
                left -= n;
            }
        }
        return HexFormat.of().formatHex(md.digest());
    }
}
