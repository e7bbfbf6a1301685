package io.jvhost.prometheus;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.RamStore;
import io.jvhost.core.metrics.MetricsRegistry;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.net.BenchPorts;
import io.jvhost.net.NetDevice;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.MetricsScrape;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Prometheus endpoint of a process serving three devices: an echo device driven by the
 * frontend simulator over its socket (so its counters move), and a blk and a net device with no
 * frontend (so every family a device adds is in the scrape). Scrapes go over real HTTP.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class PrometheusExpositionTest {
    private static BackendFixture echo;
    private static Backend blk;
    private static Backend net;
    private static MetricsServer server;

    @BeforeAll
    static void start() throws Exception {
        echo = BackendFixture.start(TestDevice.withQueues(2).build());
        blk = new Backend("disk0", new BlkDevice(new RamStore(1 << 20, false), 2), BackendOptions.DEFAULT, echo.loop());
        net = new Backend("nic0", new NetDevice(new BenchPorts.Drop(), 1, 0x525400000001L, 1500),
                BackendOptions.DEFAULT, echo.loop());
        MetricsRegistry registry = new MetricsRegistry();
        registry.register(echo.backend());
        registry.register(blk);
        registry.register(net);
        server = MetricsServer.start(new InetSocketAddress("127.0.0.1", 0), registry);
    }

    @AfterAll
    static void stop() throws Exception {
        if (server != null) {
            server.close();
        }
        if (blk != null) {
            blk.close();
            net.close();
        }
        if (echo != null) {
            echo.close();
        }
    }

    /** Echoes {@code count} requests of 100 bytes each on {@code q}, one at a time. */
    private static void echo(DriverQueue q, int count) {
        for (int i = 0; i < count; i++) {
            Traffic.Request r = Traffic.request(q.ram(), Traffic.pattern(100, i));
            int head = q.post(r.buffers());
            r.assertEchoed(q.ram(), q.awaitUsed(Traffic.USED_TIMEOUT), head);
        }
    }

    @Test
    void shouldShowPerQueueValuesGrowWithTheTrafficOnEachQueue() throws Exception {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q0 = new DriverQueue(ram, 0, 64);
             DriverQueue q1 = new DriverQueue(ram, 1, 64); Frontend f = echo.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q0, q1);
            echo(q0, 1);
            Traffic.quiesce(f, q0);
            MetricsScrape before = MetricsScrape.of(server.url());

            echo(q0, 30);
            echo(q1, 7);
            // A chain whose descriptor points past the table: completed with 0 bytes and counted as a drop.
            int bad = q1.chain(Buffer.readable(ram.allocate(16, 8), 16));
            q1.writeDescriptor(bad, ram.allocate(16, 8), 16, DriverQueue.F_NEXT, q1.size());
            q1.makeAvailable(bad);
            q1.kick();
            assertEquals(new Used(bad, 0), q1.awaitUsed(Traffic.USED_TIMEOUT));
            Traffic.quiesce(f, q0);
            Traffic.quiesce(f, q1);
            MetricsScrape after = MetricsScrape.of(server.url());

            String[] queue0 = {"device", "test", "queue", "0"}, queue1 = {"device", "test", "queue", "1"};
            assertEquals(30, grew(before, after, "jvhost_queue_requests_total", queue0));
            assertEquals(7, grew(before, after, "jvhost_queue_requests_total", queue1));
            assertEquals(30 * 100, grew(before, after, "jvhost_queue_read_bytes_total", queue0));
            assertEquals(30 * 100, grew(before, after, "jvhost_queue_written_bytes_total", queue0));
            assertEquals(7 * 100, grew(before, after, "jvhost_queue_written_bytes_total", queue1));
            assertEquals(30, grew(before, after, "jvhost_queue_latency_seconds_count", queue0),
                    "one kick-to-used latency per batch, and each request was its own batch");
            assertTrue(grew(before, after, "jvhost_queue_latency_seconds_sum", queue0) > 0);
            assertEquals(30, grew(before, after, "jvhost_queue_latency_seconds_bucket", "device", "test", "queue", "0",
                    "le", "+Inf"));
            assertTrue(grew(before, after, "jvhost_queue_kicks_total", queue0) >= 1);
            assertEquals(30, grew(before, after, "jvhost_queue_notifications_total", queue0)
                    + grew(before, after, "jvhost_queue_notifications_suppressed_total", queue0));
            assertEquals(1, after.value("jvhost_queue_drops_total", "device", "test", "queue", "1", "reason", "next_out_of_range"));
            assertEquals(0, after.value("jvhost_queue_drops_total", "device", "test", "queue", "0", "reason", "next_out_of_range"));
            assertEquals(0, after.value("jvhost_queue_broken", queue1));
            assertEquals(2, after.value("jvhost_device_queues", "device", "test", "type", "virtio-63"));
            String[] poller0 = {"device", "test", "poller", "0"};
            assertTrue(grew(before, after, "jvhost_device_poller_busy_seconds_total", poller0) > 0,
                    "the duty cycles that served 38 requests were busy");
            assertTrue(grew(before, after, "jvhost_device_poller_idle_seconds_total", poller0) > 0,
                    "the poller idled between the requests, which came one at a time");
        }
    }

    private static double grew(MetricsScrape before, MetricsScrape after, String name, String... labels) {
        return after.value(name, labels) - before.value(name, labels);
    }

    @Test
    void shouldPassPromtoolCheckMetricsOnAScrapeTakenDuringTraffic() throws Exception {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q0 = new DriverQueue(ram, 0, 64);
             DriverQueue q1 = new DriverQueue(ram, 1, 64); Frontend f = echo.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q0, q1);
            echo(q0, 5);
            echo(q1, 5);
            MetricsScrape scrape = MetricsScrape.of(server.url());
            MetricsScrape.PromtoolResult r = scrape.promtool();
            assertEquals(0, r.exitStatus(), r.output() + "\n" + scrape.text());
            assertEquals("", r.output().trim(), "promtool's lint has no complaint:\n" + scrape.text());
        }
    }

    @Test
    void shouldExposeEveryDevicesOwnFamiliesWithDeviceAndQueueLabels() throws Exception {
        MetricsScrape s = MetricsScrape.of(server.url());
        assertEquals(0, s.value("jvhost_queue_in_flight", "device", "disk0", "queue", "1"));
        assertEquals(0, s.value("jvhost_queue_errors_total", "device", "disk0", "queue", "0", "kind", "io_error"));
        assertEquals(0, s.value("jvhost_queue_drops_total", "device", "disk0", "queue", "0", "reason", "malformed_request"));
        assertEquals(0, s.value("jvhost_queue_packets_total", "device", "nic0", "queue", "1"));
        assertEquals(0, s.value("jvhost_queue_drops_total", "device", "nic0", "queue", "0", "reason", "rx_no_buffer"));
        assertEquals(0, s.value("jvhost_queue_drops_total", "device", "nic0", "queue", "1", "reason", "tx_bad_length"));
        assertEquals(2, s.value("jvhost_device_queues", "device", "nic0", "type", "net"));
        assertEquals(2, s.value("jvhost_device_queues", "device", "disk0", "type", "blk"));
        assertEquals(0, s.value("jvhost_device_poller_busy_seconds_total", "device", "nic0", "poller", "0"),
                "a poller that never ran has not been busy");
    }

    @Test
    void shouldParseHostPortForms() {
        assertEquals(new InetSocketAddress("127.0.0.1", 9100), MetricsServer.parse("127.0.0.1:9100"));
        assertEquals(new InetSocketAddress("::1", 0), MetricsServer.parse("[::1]:0"));
        assertEquals(new InetSocketAddress(9100), MetricsServer.parse(":9100"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> MetricsServer.parse("9100")).getMessage()
                .contains("HOST:PORT"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> MetricsServer.parse("localhost:99999")).getMessage()
                .contains("0..65535"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> MetricsServer.parse("localhost:http")).getMessage()
                .contains("not a number"));
    }
}
