package io.jvhost.cli;

import io.jvhost.testkit.HostCommands;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
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
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * VXLAN between "hosts" that are network namespaces this test creates (and deletes), joined only
 * by veth pairs with link-local addresses: two jvhost processes ({@code ./jvhost net
 * --vxlan-remote ...}, each in its namespace) with one real QEMU 7.2 guest each, and a Linux
 * {@code vxlan} device in a third namespace. Guest A reaches both others through its jvhost's
 * VXLAN port (head-end replication floods its ARP to both remotes):
 *
 * <pre>
 *   guest A (169.254.42.1) - jvhost A [ns jvx-a] --veth 169.254.71.0/30-- jvhost B [ns jvx-b] - guest B (.42.2)
 *                                        \--veth 169.254.72.0/30-- vx0 VNI 42 [ns jvx-l] (169.254.42.100)
 * </pre>
 * The QEMUs run in the test's namespace: they reach jvhost through Unix sockets, not the network.
 */
@Tag("qemu")
@Timeout(value = 10, unit = TimeUnit.MINUTES)
@TestMethodOrder(OrderAnnotation.class)
class VxlanGuestsTest {
    private static final Duration BOOT = Duration.ofMinutes(3);
    private static final Duration STEP = Duration.ofMinutes(1);
    private static final String NS_A = "jvx-a", NS_B = "jvx-b", NS_L = "jvx-l";
    private static final String GUEST_A = "169.254.42.1", GUEST_B = "169.254.42.2", LINUX = "169.254.42.100";

    private static Path dir;
    private static CliProcess jvhostA, jvhostB;
    private static QemuGuest guestA, guestB;

    private static String in(String ns, String command) throws IOException, InterruptedException {
        return HostCommands.runIn(ns, command);
    }

    private static void deleteNamespaces() throws InterruptedException, IOException {
        for (String ns : List.of(NS_A, NS_B, NS_L)) {
            new ProcessBuilder("ip", "netns", "delete", ns).redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD).start().waitFor(10, TimeUnit.SECONDS);
        }
    }

    @BeforeAll
    static void startHostsAndGuests() throws Exception {
        QemuTests.requireQemu();
        dir = Files.createTempDirectory("jvhost-vxlan");
        deleteNamespaces(); // a leftover run
        for (String ns : List.of(NS_A, NS_B, NS_L)) {
            HostCommands.run("ip", "netns", "add", ns);
            in(ns, "ip link set lo up");
        }
        HostCommands.run("ip", "link", "add", "jvxa-b", "netns", NS_A, "type", "veth", "peer", "name", "jvxb-a", "netns", NS_B);
        HostCommands.run("ip", "link", "add", "jvxa-l", "netns", NS_A, "type", "veth", "peer", "name", "jvxl-a", "netns", NS_L);
        in(NS_A, "ip addr add 169.254.71.1/30 dev jvxa-b && ip link set jvxa-b up"
                + " && ip addr add 169.254.72.1/30 dev jvxa-l && ip link set jvxa-l up");
        in(NS_B, "ip addr add 169.254.71.2/30 dev jvxb-a && ip link set jvxb-a up");
        in(NS_L, "ip addr add 169.254.72.2/30 dev jvxl-a && ip link set jvxl-a up"
                + " && ip link add vx0 type vxlan id 42 dstport 4789 remote 169.254.72.1 local 169.254.72.2"
                + " && ip addr add " + LINUX + "/24 dev vx0 && ip link set vx0 up");
        // A veth passes checksum offload on: Linux's vxlan would hand the inner TCP checksum over
        // unfinished (CHECKSUM_PARTIAL), and a UDP socket at the other end reads it so. A NIC
        // finishes it on the wire; here the "wire" says it cannot, so the kernel does it in software:
        in(NS_L, "ethtool -K jvxl-a tx off");

        jvhostA = CliProcess.start(dir, List.of("ip", "netns", "exec", NS_A), Map.of(), "net",
                "--socket", dir.resolve("a.sock").toString(), "--vxlan-vni", "42",
                "--vxlan-remote", "169.254.71.2", "--vxlan-remote", "169.254.72.2", "--mac", "52:54:00:00:42:01");
        jvhostB = CliProcess.start(dir, List.of("ip", "netns", "exec", NS_B), Map.of(), "net", "--switch",
                "--socket", dir.resolve("b.sock").toString(), "--vxlan-vni", "42", "--vxlan-remote", "169.254.71.1",
                "--mac", "52:54:00:00:42:02");
        jvhostA.await(CliProcess.READY, Duration.ofSeconds(60));
        jvhostB.await(CliProcess.READY, Duration.ofSeconds(60));
        assertTrue(jvhostA.output().contains("guest MTU 1450"), jvhostA.output());

        guestA = boot(dir.resolve("a.sock"), "52:54:00:00:42:01", "a");
        guestB = boot(dir.resolve("b.sock"), "52:54:00:00:42:02", "b");
        guestA.awaitReady(BOOT);
        guestB.awaitReady(BOOT);
        run(guestA, "ip link set eth0 up && ip addr add " + GUEST_A + "/24 dev eth0");
        run(guestB, "ip link set eth0 up && ip addr add " + GUEST_B + "/24 dev eth0");
    }

    private static QemuGuest boot(Path socket, String mac, String name) throws Exception {
        QemuGuest g = QemuGuest.builder().image(GuestImage.prepare()).memoryMib(256)
                .extraArgs(QemuConfigs.deviceArgs("net-qemu.sh", socket.toString(), mac, "1", "1450"))
                .logFile(QemuTests.logFile(VxlanGuestsTest.class).resolveSibling("VxlanGuestsTest-" + name + ".log"))
                .build();
        g.start();
        return g;
    }

    private static String run(QemuGuest g, String command) {
        QemuGuest.Result r = g.exec(command, STEP);
        assertEquals(0, r.exitStatus(), () -> command + "\n" + r.output());
        return r.output();
    }

    @AfterAll
    static void stopAll() throws Exception {
        for (QemuGuest g : new QemuGuest[] {guestA, guestB}) {
            if (g != null) {
                g.close();
            }
        }
        for (CliProcess p : new CliProcess[] {jvhostA, jvhostB}) {
            if (p != null) {
                if (p.process.isAlive()) {
                    p.terminate();
                }
                System.out.println(p.output());
                p.close();
            }
        }
        deleteNamespaces();
    }

    @Test
    @Order(1)
    void shouldGiveTheGuestTheUnderlaysMtuLessTheVxlanOverhead() {
        assertEquals("1450", run(guestA, "cat /sys/class/net/eth0/mtu").strip());
    }

    @Test
    @Order(2)
    void shouldLetAGuestPingALinuxVxlanDeviceAndBeReachedFromItResolvingArpThroughTheTunnel() throws Exception {
        assertTrue(run(guestA, "ping -c 3 -W 5 " + LINUX).contains("3 packets received"));
        assertTrue(in(NS_L, "busybox ping -c 3 -W 5 -s 1400 " + GUEST_A).contains("3 packets received"), "1400 B + headers fit 1450");
        assertTrue(in(NS_L, "ip neigh show dev vx0").contains("52:54:00:00:42:01"), "vx0 resolved guest A's MAC");
    }

    @Test
    @Order(3)
    void shouldCarryTcpBothWaysBetweenAGuestAndTheLinuxVxlanDevice() throws Exception {
        // Linux to guest: the guest listens, busybox nc in the namespace connects and sends a line.
        run(guestA, "nc -l -p 5001 > /tmp/from-linux 2>&1 < /dev/null &");
        Thread.sleep(500);
        in(NS_L, "echo hello-from-linux-vxlan | busybox nc -w 3 " + GUEST_A + " 5001");
        assertTrue(run(guestA, "for i in 1 2 3 4 5; do grep -q hello /tmp/from-linux && break; sleep 1; done; cat /tmp/from-linux")
                .contains("hello-from-linux-vxlan"));

        // Guest to Linux: the namespace listens, the guest connects.
        Process listener = new ProcessBuilder("ip", "netns", "exec", NS_L, "busybox", "nc", "-l", "-p", "5002")
                .redirectErrorStream(true).start();
        try {
            Thread.sleep(500);
            run(guestA, "echo hello-from-the-guest | nc -w 3 " + LINUX + " 5002");
            assertTrue(listener.waitFor(30, TimeUnit.SECONDS), "the listener saw the connection end");
            assertTrue(new String(listener.getInputStream().readAllBytes(), StandardCharsets.UTF_8)
                    .contains("hello-from-the-guest"));
        } finally {
            listener.destroyForcibly();
        }
    }

    @Test
    @Order(4)
    void shouldCarryPingBetweenTwoGuestsBehindTwoJvhostProcessesJoinedOnlyByTheUnderlay() throws Exception {
        assertTrue(run(guestA, "ping -c 3 -W 5 " + GUEST_B).contains("3 packets received"));
        assertTrue(run(guestB, "ping -c 3 -W 5 -s 1400 " + GUEST_A).contains("3 packets received"));
        // Each jvhost prints its VXLAN port's counters every 10 s and at exit; the tunnel was used.
        guestA.quit(Duration.ofSeconds(60));
        guestB.quit(Duration.ofSeconds(60));
        assertEquals(0, jvhostA.terminate());
        assertEquals(0, jvhostB.terminate());
        assertTrue(lastCount(jvhostA.output(), "rx frames") >= 6, jvhostA.output());
        assertTrue(lastCount(jvhostB.output(), "rx frames") >= 6, jvhostB.output());
        assertTrue(lastCount(jvhostA.output(), "tx datagrams") > lastCount(jvhostA.output(), "tx frames"),
                "A's floods went to both remotes:\n" + jvhostA.output());
    }

    /** The last value of {@code counter} in the VXLAN port's status lines. */
    private static long lastCount(String output, String counter) {
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("vxlan VNI 42 .*" + counter + " (\\d+)").matcher(output);
        long last = -1;
        while (m.find()) {
            last = Long.parseLong(m.group(1));
        }
        return last;
    }
}
