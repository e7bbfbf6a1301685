package io.jvhost.net;

import io.jvhost.testkit.HostCommands;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Real QEMU guests move TCP bulk data through {@code --tap} with checksum and segmentation offloads
 * on and off: iperf3 in the guest against iperf3 on the TAP's host side, both ways, and a file of
 * random bytes each way over HTTP (busybox httpd and wget at both ends) that must arrive with the
 * sender's SHA-256. The TAP lives in a network namespace of the test's own (link-local
 * addresses), so traffic never leaves it.
 */
@Tag("qemu")
@Timeout(value = 10, unit = TimeUnit.MINUTES)
class OffloadTapGuestTest {
    private static final String NS = "jvhost-offload", TAP = "jvtap-off0";
    private static final String HOST_IP = "169.254.77.1", GUEST_IP = "169.254.77.2";
    private static final Pattern RECEIVER = Pattern.compile("([0-9.]+) ([KMG]?)bits/sec\\s+receiver");


    /** The feature bits the guest's driver accepted, as /sys shows them: character i is bit i. */
    private static String guestFeatures(QemuGuest guest) {
        QemuGuest.Result r = guest.exec("cat /sys/class/net/eth0/device/features", Duration.ofMinutes(1));
        assertEquals(0, r.exitStatus(), r.output());
        Matcher m = Pattern.compile("[01]{64}").matcher(r.output());
        assertTrue(m.find(), r.output());
        return m.group();
    }

    /** Megabits per second iperf3's receiver counted, from its summary (all streams'). */
    private static double receiverMbits(String iperf) {
        Matcher m = RECEIVER.matcher(iperf);
        assertTrue(m.find(), iperf);
        String value = m.group(1), unit = m.group(2);
        while (m.find()) { // with parallel streams the [SUM] line comes last
            value = m.group(1);
            unit = m.group(2);
        }
        double v = Double.parseDouble(value);
        return switch (unit) {
            case "G" -> v * 1000;
            case "K" -> v / 1000;
            case "" -> v / 1_000_000;
            default -> v;
        };
    }

    /**
     * 16 MiB of random bytes host to guest and 16 MiB guest to host, over TCP through the TAP,
     * arrive whole: iperf3 counts bytes but never looks at them, so a segment the offload path
     * corrupted (a wrong checksum offset, a split at the wrong place) would pass it unseen.
     */
    private static void assertFilesCrossIntactBothWays(QemuGuest guest, Path dir) throws Exception {
        Path www = Files.createDirectories(dir.resolve("www"));
        byte[] toGuest = new byte[16 << 20];
        new Random(7).nextBytes(toGuest);
        Files.write(www.resolve("blob"), toGuest);
        Process httpd = new ProcessBuilder("ip", "netns", "exec", NS, "busybox", "httpd", "-f", "-p", HOST_IP + ":8080",
                "-h", www.toString()).redirectErrorStream(true).redirectOutput(dir.resolve("httpd.log").toFile()).start();
        try {
            // A few tries: the host's httpd may not listen yet when the guest first asks. (Bounded by
            // timeout, not wget -T: Debian 12's busybox wget crashes on -T.)
            QemuGuest.Result got = guest.exec("for i in 1 2 3 4 5; do timeout 60 wget -q -O /tmp/blob http://" + HOST_IP
                    + ":8080/blob && break; sleep 1; done; sha256sum /tmp/blob", Duration.ofMinutes(3));
            assertEquals(0, got.exitStatus(), got.output());
            assertTrue(got.output().contains(sha256(toGuest) + "  /tmp/blob"), "host->guest: " + got.output());
        } finally {
            httpd.destroy();
            httpd.waitFor(10, TimeUnit.SECONDS);
        }

        QemuGuest.Result made = guest.exec("mkdir -p /tmp/www && dd if=/dev/urandom of=/tmp/www/out bs=1M count=16 2>/dev/null"
                + " && sha256sum /tmp/www/out && httpd -p 8080 -h /tmp/www", Duration.ofMinutes(1));
        assertEquals(0, made.exitStatus(), made.output());
        Matcher digest = Pattern.compile("([0-9a-f]{64})  /tmp/www/out").matcher(made.output());
        assertTrue(digest.find(), made.output());
        Path fetched = dir.resolve("out");
        HostCommands.run("ip", "netns", "exec", NS, "busybox", "timeout", "60", "busybox", "wget", "-q", "-O", fetched.toString(),
                "http://" + GUEST_IP + ":8080/out");
        assertEquals(digest.group(1), sha256(Files.readAllBytes(fetched)), "guest->host");
    }

    private static String sha256(byte[] data) throws NoSuchAlgorithmException {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
    }

    @ParameterizedTest(name = "offloads {0}, {1} queue pair(s)")
    @CsvSource({"true, 1", "false, 1", "true, 2"})
    void shouldCarryTcpBothWaysBetweenAGuestAndTheHostSideOfItsTap(boolean offloads, int pairs) throws Exception {
        QemuTests.requireQemu();
        QemuTests.requireCommand("iperf3", "iperf3");
        QemuTests.requireCommand("busybox", "busybox-static"); // httpd and wget on the TAP's host side
        Path dir = Files.createTempDirectory("jvhost-offload");
        new ProcessBuilder("ip", "netns", "delete", NS).start().waitFor(10, TimeUnit.SECONDS); // a leftover run
        TapPort port = new TapPort(TAP, pairs); // a multi-queue TAP with 2 pairs: one TAP queue each
        NetDevice device = new NetDevice(port, pairs, 0x525400000021L, 1500, offloads);
        Process server = null;
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("offload", device, BackendOptions.DEFAULT, loop)) {
            HostCommands.run("ip", "netns", "add", NS);
            HostCommands.run("ip", "link", "set", TAP, "netns", NS);
            HostCommands.run("ip", "netns", "exec", NS, "ip", "addr", "add", HOST_IP + "/24", "dev", TAP);
            HostCommands.run("ip", "netns", "exec", NS, "ip", "link", "set", TAP, "up");
            server = new ProcessBuilder("ip", "netns", "exec", NS, "iperf3", "-s", "-B", HOST_IP)
                    .redirectErrorStream(true).redirectOutput(dir.resolve("iperf3-server.log").toFile()).start();
            backend.start();
            try (VhostUserServer vhost = VhostUserServer.listen(dir.resolve("net.sock"), backend, loop);
                 QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).cpus(pairs)
                         .extraArgs(QemuConfigs.deviceArgs("net-qemu.sh", vhost.path().toString(), "52:54:00:00:00:21",
                                 Integer.toString(pairs)))
                         .logFile(QemuTests.logFile(OffloadTapGuestTest.class)).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                String features = guestFeatures(guest);
                for (int bit : new int[] {0, 1, 7, 8, 11, 12}) { // CSUM, GUEST_CSUM, GUEST_TSO4/6, HOST_TSO4/6
                    assertEquals(offloads ? '1' : '0', features.charAt(bit), "feature bit " + bit + " of " + features);
                }
                assertEquals(0, guest.exec("ip link set eth0 up && ip addr add " + GUEST_IP + "/24 dev eth0",
                        Duration.ofMinutes(1)).exitStatus());
                QemuGuest.Result ping = guest.exec("ping -c 2 -W 5 " + HOST_IP, Duration.ofMinutes(1));
                assertTrue(ping.output().contains("2 packets received"), ping.output());

                String streams = pairs > 1 ? " -P 4" : ""; // parallel streams, for the TAP to spread over its queues
                QemuGuest.Result out = guest.exec("iperf3 -c " + HOST_IP + " -t 3 -f m" + streams, Duration.ofMinutes(2));
                assertEquals(0, out.exitStatus(), out.output());
                QemuGuest.Result in = guest.exec("iperf3 -c " + HOST_IP + " -t 3 -f m -R" + streams, Duration.ofMinutes(2));
                assertEquals(0, in.exitStatus(), in.output());
                double toHost = receiverMbits(out.output()), toGuest = receiverMbits(in.output());
                System.out.printf("offloads %s: guest->host %.0f Mbit/s, host->guest %.0f Mbit/s (%s)%n",
                        offloads ? "on" : "off", toHost, toGuest, port.describe());
                assertTrue(toHost > 1 && toGuest > 1, out.output() + in.output());
                assertFilesCrossIntactBothWays(guest, dir);
                guest.quit(Duration.ofSeconds(60));
            }
            NetCounters c = device.nic().counters(0);
            assertEquals(0, c.txBadHeader, c.toString());
            if (offloads) {
                // Segments larger than the MTU crossed whole: more bytes than MTU-sized frames could carry.
                assertTrue(c.txBytes > c.txFrames * 1514L || c.rxBytes > c.rxFrames * 1514L, c.toString());
            } else {
                assertTrue(c.txBytes <= c.txFrames * 1518L && c.rxBytes <= c.rxFrames * 1518L, c.toString());
            }
            if (pairs > 1) {
                System.out.println("per pair: " + device.nic().counters(0) + " | " + device.nic().counters(1));
                assertEquals(0, device.nic().counters(1).txBadHeader);
                for (int pair = 0; pair < pairs; pair++) { // 4 flows each way: both TAP queues carry some
                    NetCounters moved = device.nic().counters(pair);
                    assertTrue(moved.rxFrames + moved.txFrames > 0, "pair " + pair + " idle: " + moved);
                }
            }
        } finally {
            if (server != null) {
                server.destroy();
                server.waitFor(10, TimeUnit.SECONDS);
            }
            new ProcessBuilder(List.of("ip", "netns", "delete", NS)).start().waitFor(10, TimeUnit.SECONDS);
        }
    }
}
