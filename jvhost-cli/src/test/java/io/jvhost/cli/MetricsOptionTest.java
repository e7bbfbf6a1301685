package io.jvhost.cli;

import io.jvhost.testkit.MetricsScrape;
import io.jvhost.testkit.Traffic;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import picocli.CommandLine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code --metrics HOST:PORT}, which every device command takes: the real CLI process serves
 * Prometheus text at /metrics (port 0: the one chosen is printed), counting what a frontend does;
 * a bad address is a usage error before anything starts.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class MetricsOptionTest {
    private static final Pattern URL = Pattern.compile("jvhost metrics: (http://\\S+/metrics)");

    @TempDir
    Path dir;
    private Process backend;

    @AfterEach
    void kill() {
        if (backend != null) {
            backend.destroyForcibly();
        }
    }

    /** Starts {@code jvhost ARGS} in a JVM of its own; returns the metrics URL it printed. */
    private String start(Path log, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(List.of(args));
        backend = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            String out = Files.readString(log);
            Matcher m = URL.matcher(out);
            if (m.find() && out.contains(SignalShutdownTest.READY)) {
                return m.group(1);
            }
            assertTrue(backend.isAlive(), "backend died:\n" + out);
            assertTrue(System.nanoTime() < deadline, "no metrics URL printed:\n" + out);
            Thread.sleep(20);
        }
    }

    @Test
    void shouldServeTheDevicesQueueCountersAtMetricsWhenGivenAnEphemeralPort() throws Exception {
        Path socket = dir.resolve("rng.sock"), log = dir.resolve("rng.log");
        String url = start(log, "rng", "--socket", socket.toString(), "--metrics", "127.0.0.1:0");
        assertTrue(url.startsWith("http://127.0.0.1:") && !url.startsWith("http://127.0.0.1:0/"), url);

        MetricsScrape idle = MetricsScrape.of(url);
        assertEquals(0, idle.value("jvhost_queue_requests_total", "device", "rng", "queue", "0"));
        assertEquals(1, idle.value("jvhost_device_queues", "device", "rng", "type", "rng"));
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Frontend f = Frontend.connect(socket, 10_000)) {
            f.startLikeQemu(f.handshakeLikeQemu(1), ram, q);
            for (int i = 0; i < 10; i++) {
                int head = q.post(Buffer.writable(ram.allocate(64, 8), 64));
                assertEquals(new Used(head, 64), q.awaitUsed(Traffic.USED_TIMEOUT));
            }
            Traffic.quiesce(f, q);
            MetricsScrape busy = MetricsScrape.of(url);
            assertEquals(10, busy.value("jvhost_queue_requests_total", "device", "rng", "queue", "0"));
            assertEquals(640, busy.value("jvhost_queue_written_bytes_total", "device", "rng", "queue", "0"));
            assertEquals(10, busy.value("jvhost_queue_latency_seconds_count", "device", "rng", "queue", "0"));
            MetricsScrape.PromtoolResult lint = busy.promtool();
            assertEquals(0, lint.exitStatus(), lint.output() + "\n" + busy.text());
        }
    }

    @Test
    void shouldReportTheVxlanUplinksDatagramsAndDropsByReason() throws Exception {
        int port = 40000 + (int) (ProcessHandle.current().pid() % 20000); // loopback only; a port of this run's own
        Path log = dir.resolve("net.log");
        String url = start(log, "net", "--socket", dir.resolve("net.sock").toString(), "--vxlan-remote", "127.0.0.1",
                "--vxlan-vni", "42", "--vxlan-port", Integer.toString(port), "--metrics", "127.0.0.1:0");
        MetricsScrape idle = MetricsScrape.of(url);
        assertEquals(0, idle.value("jvhost_vxlan_rx_datagrams_total", "device", "vxlan42", "type", "vxlan"));
        try (java.net.DatagramSocket udp = new java.net.DatagramSocket(0, java.net.InetAddress.getByName("127.0.0.1"));
             java.net.DatagramSocket stranger = new java.net.DatagramSocket(0, java.net.InetAddress.getByName("127.0.0.2"))) {
            byte[] truncated = new byte[5]; // shorter than a VXLAN header
            byte[] wrongVni = new byte[8 + 60];
            wrongVni[0] = 0x08; // the I flag
            wrongVni[6] = 7; // VNI 7, not 42
            for (int i = 0; i < 3; i++) {
                udp.send(new java.net.DatagramPacket(truncated, truncated.length, java.net.InetAddress.getLoopbackAddress(), port));
                udp.send(new java.net.DatagramPacket(wrongVni, wrongVni.length, java.net.InetAddress.getLoopbackAddress(), port));
            }
            for (int i = 0; i < 2; i++) { // from an address that is no remote of the port
                stranger.send(new java.net.DatagramPacket(wrongVni, wrongVni.length, java.net.InetAddress.getLoopbackAddress(), port));
            }
        }
        MetricsScrape after = null;
        for (long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10); System.nanoTime() < deadline; Thread.sleep(50)) {
            after = MetricsScrape.of(url);
            if (after.value("jvhost_vxlan_rx_datagrams_total", "device", "vxlan42", "type", "vxlan") >= 8) {
                break;
            }
        }
        assertEquals(8, after.value("jvhost_vxlan_rx_datagrams_total", "device", "vxlan42", "type", "vxlan"), after.text());
        assertEquals(3, after.value("jvhost_vxlan_drops_total", "device", "vxlan42", "type", "vxlan", "reason", "rx_truncated_header"));
        assertEquals(3, after.value("jvhost_vxlan_drops_total", "device", "vxlan42", "type", "vxlan", "reason", "rx_wrong_vni"));
        assertEquals(2, after.value("jvhost_vxlan_drops_total", "device", "vxlan42", "type", "vxlan", "reason", "rx_unknown_sender"));
        assertEquals(0, after.value("jvhost_vxlan_rx_frames_total", "device", "vxlan42", "type", "vxlan"));
        MetricsScrape.PromtoolResult lint = after.promtool();
        assertEquals(0, lint.exitStatus(), lint.output() + "\n" + after.text());
    }

    @Test
    void shouldRefuseAMetricsAddressWithoutAPortWithOneLineAndExitCodeTwo() {
        StringWriter err = new StringWriter();
        CommandLine cli = new CommandLine(new Main());
        cli.setErr(new PrintWriter(err, true));

        int code = cli.execute("rng", "--socket", dir.resolve("never.sock").toString(), "--metrics", "9100");

        assertEquals(2, code, err.toString());
        String first = err.toString().lines().findFirst().orElse("");
        assertTrue(first.startsWith("Invalid value for option '--metrics': expected HOST:PORT"), first);
    }
}
