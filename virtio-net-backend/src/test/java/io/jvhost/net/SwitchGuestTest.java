package io.jvhost.net;

import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.GuestVirtio;
import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Real QEMU 7.2 guests (TCG) on one jvhost switch ping each other, also across a reboot, and
 * exchange TCP with and without offloads: guest a on split virtqueues with one queue pair, guest b
 * with {@code packed=on}, two queue pairs and two vCPUs, pinging from each vCPU so that both pairs
 * carry frames, and guest c (split) whose NIC offers no offloads.
 */
@Tag("qemu")
@Timeout(value = 10, unit = TimeUnit.MINUTES)
class SwitchGuestTest {
    private static final Duration BOOT = Duration.ofMinutes(3);
    private static final Duration STEP = Duration.ofMinutes(2);

    private static QemuGuest boot(Path socket, String mac, int index, int pairs, boolean packed) throws Exception {
        QemuGuest g = QemuGuest.builder().image(GuestImage.prepare()).memoryMib(256).cpus(pairs)
                .extraArgs(QemuConfigs.deviceArgs(packed, "net-qemu.sh", socket.toString(), mac, String.valueOf(pairs)))
                .logFile(QemuTests.logFile(SwitchGuestTest.class).resolveSibling("SwitchGuestTest-" + index + ".log"))
                .build();
        g.start();
        return g;
    }

    private static void configure(QemuGuest g, String address) {
        run(g, "ip link set eth0 up && ip addr add " + address + "/24 dev eth0");
    }

    private static String run(QemuGuest g, String command) {
        QemuGuest.Result r = g.exec(command, STEP);
        assertEquals(0, r.exitStatus(), () -> command + "\n" + r.output());
        return r.output();
    }

    @Test
    void shouldLetGuestsOnTheSwitchPingAndExchangeTcpWithAndWithoutOffloadsAcrossAReboot() throws Exception {
        QemuTests.requireQemu();
        QemuTests.requireCommand("iperf3", "iperf3");
        Path dir = Files.createTempDirectory("jvhost-switch");
        L2Switch sw = new L2Switch();
        NetDevice a = new NetDevice(sw.newPort(), 1, 0x525400000001L, 1500);
        NetDevice b = new NetDevice(sw.newPort(), 2, 0x525400000002L, 1500);
        // Guest c's NIC offers no offloads: a's TSO segments reach it cut by the switch (Segmenter),
        // frames a real Linux guest made, checked by c's own TCP stack.
        NetDevice c = new NetDevice(sw.newPort(), 1, 0x525400000003L, 1500, false);
        try (ControlLoop loop = new ControlLoop();
             Backend ba = new Backend("net0", a, BackendOptions.DEFAULT, loop);
             Backend bb = new Backend("net1", b, BackendOptions.DEFAULT, loop);
             Backend bc = new Backend("net2", c, BackendOptions.DEFAULT, loop)) {
            ba.start();
            bb.start();
            bc.start();
            try (VhostUserServer sa = VhostUserServer.listen(dir.resolve("net0.sock"), ba, loop);
                 VhostUserServer sb = VhostUserServer.listen(dir.resolve("net1.sock"), bb, loop);
                 VhostUserServer sc = VhostUserServer.listen(dir.resolve("net2.sock"), bc, loop);
                 QemuGuest ga = boot(sa.path(), "52:54:00:00:00:01", 0, 1, false);
                 QemuGuest gb = boot(sb.path(), "52:54:00:00:00:02", 1, 2, true);
                 QemuGuest gc = boot(sc.path(), "52:54:00:00:00:03", 2, 1, false)) {
                ga.awaitReady(BOOT);
                gb.awaitReady(BOOT);
                gc.awaitReady(BOOT);
                assertFalse(GuestVirtio.ringPacked(ga, GuestVirtio.NET), "guest a: split rings");
                assertTrue(GuestVirtio.ringPacked(gb, GuestVirtio.NET), "guest b: VIRTIO_F_RING_PACKED (bit 34) negotiated");
                configure(ga, "10.0.0.1");
                configure(gb, "10.0.0.2");
                configure(gc, "10.0.0.3");
                run(gb, "ethtool -L eth0 combined 2 2>/dev/null; true"); // Linux uses every pair it can by default
                assertTrue(run(ga, "ping -c 3 -W 5 10.0.0.2").contains("3 packets received"));
                assertTrue(run(gb, "ping -c 3 -W 5 -s 1400 10.0.0.1").contains("3 packets received"));
                assertTrue(run(gb, "taskset 1 ping -c 3 -W 5 10.0.0.1").contains("3 packets received"), "from vCPU 0");
                assertTrue(run(gb, "taskset 2 ping -c 3 -W 5 10.0.0.1").contains("3 packets received"), "from vCPU 1");
                assertEquals(0, sw.lookup(0x525400000001L), "guest a learned on port 0");
                assertEquals(1, sw.lookup(0x525400000002L), "guest b learned on port 1");

                // TCP between the guests, offloads on both: segments cross the switch whole.
                run(gb, "iperf3 -s -D -1 -B 10.0.0.2");
                String iperf = run(ga, "sleep 1; iperf3 -c 10.0.0.2 -t 3 -f m");
                assertTrue(iperf.contains("receiver"), iperf);
                NetCounters sent = a.nic().counters(0);
                assertTrue(sent.txBytes > sent.txFrames * 1514L, "larger than MTU-sized frames: " + sent);
                assertEquals(0, sent.txBadHeader, sent.toString());

                // The same from a to c, which takes plain frames only: TCP works, c saw no segment over the MTU.
                run(gc, "iperf3 -s -D -1 -B 10.0.0.3");
                String cut = run(ga, "sleep 1; iperf3 -c 10.0.0.3 -t 3 -f m");
                assertTrue(cut.contains("receiver"), cut);
                NetCounters plain = c.nic().counters(0);
                assertTrue(plain.rxFrames > 1000 && plain.rxBytes <= plain.rxFrames * 1514L, "MTU-sized frames: " + plain);
                gc.quit(Duration.ofSeconds(60));

                gb.reboot(BOOT);
                configure(gb, "10.0.0.2");
                assertTrue(run(gb, "ping -c 3 -W 5 -s 1400 10.0.0.1").contains("3 packets received"));
                assertTrue(run(ga, "ping -c 2 -W 5 10.0.0.2").contains("2 packets received"));
                ga.quit(Duration.ofSeconds(60));
                gb.quit(Duration.ofSeconds(60));
            }
            assertTrue(a.nic().counters(0).txFrames >= 8 && b.nic().counters(0).rxFrames + b.nic().counters(1).rxFrames >= 8,
                    a.port().describe() + " / " + b.port().describe());
            for (int q = 0; q < 4; q++) {
                assertTrue(bb.queue(q).isPacked(), "guest b's queue " + q + " ran packed");
            }
            assertTrue(b.nic().counters(0).txFrames > 0 && b.nic().counters(1).txFrames > 0,
                    "both of guest b's queue pairs sent frames: " + b.port().describe());
        }
    }
}
