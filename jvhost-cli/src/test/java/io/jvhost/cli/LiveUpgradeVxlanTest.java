package io.jvhost.cli;

import io.jvhost.testkit.MetricsScrape;

import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A NIC with a VXLAN uplink hands its UDP port over in a live upgrade: the successor receives on
 * the very socket the old process bound (a second bind would fail while the old one lives), and
 * counts what arrives there once it serves. Loopback only.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class LiveUpgradeVxlanTest {
    private static final Pattern URL = Pattern.compile("jvhost metrics: (http://\\S+/metrics)");

    @TempDir
    Path dir;

    @Test
    void shouldHandTheVxlanPortOverSoTheSuccessorReceivesOnIt() throws Exception {
        int port = 20000 + (int) (ProcessHandle.current().pid() % 20000);
        String[] net = {"net", "--socket", dir.resolve("net.sock").toString(), "--vxlan-remote", "127.0.0.1", "--vxlan-vni", "42",
            "--vxlan-port", Integer.toString(port), "--metrics", "127.0.0.1:0", "--handover", dir.resolve("net.handover").toString()};
        try (CliProcess old = CliProcess.start(dir, List.of(), Map.of(), net)) {
            old.await(CliProcess.READY, Duration.ofSeconds(30));
            try (CliProcess next = CliProcess.start(dir, List.of(), Map.of(), net)) {
                next.await("took over from pid " + old.process.pid(), Duration.ofSeconds(60)).await(CliProcess.READY, Duration.ofSeconds(10));
                assertTrue(old.process.waitFor(30, TimeUnit.SECONDS), old.output());
                assertEquals(0, old.process.exitValue(), old.output());

                Matcher m = URL.matcher(next.output());
                assertTrue(m.find(), next.output());
                try (DatagramSocket udp = new DatagramSocket(0, InetAddress.getByName("127.0.0.1"))) {
                    byte[] truncated = new byte[3];
                    for (int i = 0; i < 5; i++) {
                        udp.send(new DatagramPacket(truncated, truncated.length, InetAddress.getLoopbackAddress(), port));
                    }
                }
                MetricsScrape s = null;
                for (long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10); System.nanoTime() < deadline; Thread.sleep(50)) {
                    s = MetricsScrape.of(m.group(1));
                    if (s.value("jvhost_vxlan_rx_datagrams_total", "device", "vxlan42", "type", "vxlan") >= 5) {
                        break;
                    }
                }
                assertEquals(5, s.value("jvhost_vxlan_drops_total", "device", "vxlan42", "type", "vxlan", "reason", "rx_truncated_header"),
                        "the successor receives on the port it took over:\n" + s.text());
                assertEquals(0, next.terminate(), next.output());
            }
        }
    }
}
