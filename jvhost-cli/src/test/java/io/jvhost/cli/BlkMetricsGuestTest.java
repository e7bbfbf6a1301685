package io.jvhost.cli;

import io.jvhost.testkit.MetricsScrape;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
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
 * {@code jvhost blk --metrics 127.0.0.1:0} under a real QEMU 7.2 guest (TCG, two vCPUs, a
 * two-queue disk): scrapes taken while the guest reads on one vCPU and writes on the other show
 * both queues' requests, bytes and latency counts growing, pass {@code promtool check metrics},
 * and count no drop or error. One boot.
 */
@Tag("qemu")
@Timeout(value = 5, unit = TimeUnit.MINUTES)
class BlkMetricsGuestTest {
    private static final Pattern URL = Pattern.compile("jvhost metrics: (http://\\S+/metrics)");
    private static final long MIB_16 = 16L << 20;

    @TempDir
    Path dir;

    private static double sum(MetricsScrape s, String name) {
        return s.value(name, "device", "blk", "queue", "0") + s.value(name, "device", "blk", "queue", "1");
    }

    @Test
    void shouldShowBothQueuesCountersGrowWhileTheGuestReadsAndWrites() throws Exception {
        QemuTests.requireQemu();
        Path socket = dir.resolve("blk.sock"), log = dir.resolve("blk.log");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), Main.class.getName(),
                "blk", "--ram", "64M", "--queues", "2", "--socket", socket.toString(), "--metrics", "127.0.0.1:0"));
        Process backend = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        try {
            String url = awaitUrl(backend, log);
            try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).cpus(2).memoryMib(256)
                    .extraArgs(QemuConfigs.deviceArgs("blk-qemu.sh", socket.toString(), "2"))
                    .logFile(QemuTests.logFile(getClass())).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                MetricsScrape before = MetricsScrape.of(url);

                List<MetricsScrape> during = new CopyOnWriteArrayList<>();
                Thread scraper = Thread.ofPlatform().name("scraper").start(() -> {
                    while (!Thread.currentThread().isInterrupted()) {
                        try {
                            during.add(MetricsScrape.of(url));
                            Thread.sleep(20);
                        } catch (InterruptedException e) {
                            return;
                        } catch (Exception e) {
                            throw new IllegalStateException(e);
                        }
                    }
                });
                // 16 MiB written from vCPU 0 and 16 MiB read from vCPU 1: blk-mq sends each CPU's I/O down its own queue.
                QemuGuest.Result r = guest.exec("taskset 0x1 dd if=/dev/urandom of=/dev/vda bs=64k count=256 oflag=direct 2>/dev/null &"
                        + " taskset 0x2 dd if=/dev/vda of=/dev/null bs=64k count=256 skip=512 iflag=direct 2>/dev/null & wait",
                        Duration.ofMinutes(2));
                scraper.interrupt();
                scraper.join();
                assertEquals(0, r.exitStatus(), r.output());
                MetricsScrape after = MetricsScrape.of(url);

                for (String q : List.of("0", "1")) {
                    assertTrue(after.value("jvhost_queue_requests_total", "device", "blk", "queue", q)
                            >= before.value("jvhost_queue_requests_total", "device", "blk", "queue", q) + 100,
                            "queue " + q + " carried the I/O of its vCPU:\n" + after.text());
                    assertTrue(after.value("jvhost_queue_latency_seconds_count", "device", "blk", "queue", q)
                            > before.value("jvhost_queue_latency_seconds_count", "device", "blk", "queue", q), "queue " + q);
                    assertEquals(0, after.value("jvhost_queue_in_flight", "device", "blk", "queue", q), "queue " + q + " idle again");
                    for (String reason : List.of("malformed_request", "next_out_of_range", "buffer_unmapped")) {
                        assertEquals(0, after.value("jvhost_queue_drops_total", "device", "blk", "queue", q, "reason", reason));
                    }
                    assertEquals(0, after.value("jvhost_queue_errors_total", "device", "blk", "queue", q, "kind", "io_error"));
                }
                assertTrue(sum(after, "jvhost_queue_read_bytes_total") - sum(before, "jvhost_queue_read_bytes_total") >= MIB_16,
                        "the 16 MiB written reached the device");
                assertTrue(sum(after, "jvhost_queue_written_bytes_total") - sum(before, "jvhost_queue_written_bytes_total") >= MIB_16,
                        "the 16 MiB read came from the device");

                double requestsBefore = sum(before, "jvhost_queue_requests_total"), requestsAfter = sum(after, "jvhost_queue_requests_total");
                MetricsScrape mid = null;
                double last = requestsBefore;
                for (MetricsScrape s : during) {
                    double v = sum(s, "jvhost_queue_requests_total");
                    assertTrue(v >= last, "a counter went down between scrapes: " + last + " then " + v);
                    last = v;
                    if (v > requestsBefore && v < requestsAfter && mid == null) {
                        mid = s;
                    }
                }
                assertTrue(mid != null, during.size() + " scrapes during the I/O, none caught it in progress");
                MetricsScrape.PromtoolResult lint = mid.promtool();
                assertEquals(0, lint.exitStatus(), lint.output() + "\n" + mid.text());
                System.out.printf("blk metrics guest test: %d scrapes during the I/O; requests %.0f -> %.0f%n",
                        during.size(), requestsBefore, requestsAfter);
                guest.quit(Duration.ofSeconds(60));
            }
        } finally {
            backend.destroyForcibly();
        }
    }

    private static String awaitUrl(Process backend, Path log) throws Exception {
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
}
