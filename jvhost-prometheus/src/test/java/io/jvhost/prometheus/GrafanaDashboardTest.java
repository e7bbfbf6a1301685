package io.jvhost.prometheus;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.RamStore;
import io.jvhost.core.metrics.MetricsRegistry;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.net.BenchPorts;
import io.jvhost.net.NetDevice;
import io.jvhost.testkit.MetricsScrape;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The Grafana dashboard in docs/grafana is one importable file (a {@code DS_PROMETHEUS} datasource
 * input that every panel and variable uses) and queries only metrics a real scrape has.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class GrafanaDashboardTest {
    static final Path DASHBOARD = Path.of("..", "docs", "grafana", "jvhost-dashboard.json");
    private static final Pattern METRIC = Pattern.compile("\\bjvhost_[a-z0-9_]+");

    private static JsonNode dashboard() throws Exception {
        return new ObjectMapper().readTree(Files.readString(DASHBOARD)); // throws on malformed JSON
    }

    /** Every PromQL expression: panel targets and variable queries. */
    private static List<String> queries(JsonNode d) {
        List<String> out = new ArrayList<>();
        for (JsonNode p : d.path("panels")) {
            for (JsonNode t : p.path("targets")) {
                out.add(t.path("expr").asText());
            }
        }
        for (JsonNode v : d.path("templating").path("list")) {
            out.add(v.path("definition").asText());
        }
        return out;
    }

    @Test
    void shouldBeOneImportableFileWhosePanelsAllUseTheDatasourceInput() throws Exception {
        JsonNode d = dashboard();
        JsonNode input = d.path("__inputs").get(0);
        assertEquals("DS_PROMETHEUS", input.path("name").asText());
        assertEquals("prometheus", input.path("pluginId").asText());
        int targets = 0;
        for (JsonNode p : d.path("panels")) {
            if (p.path("type").asText().equals("row")) {
                continue;
            }
            assertEquals("${DS_PROMETHEUS}", p.path("datasource").path("uid").asText(), p.path("title").asText());
            for (JsonNode t : p.path("targets")) {
                assertEquals("${DS_PROMETHEUS}", t.path("datasource").path("uid").asText(), p.path("title").asText());
                assertFalse(t.path("expr").asText().isBlank(), p.path("title").asText());
                targets++;
            }
        }
        for (JsonNode v : d.path("templating").path("list")) {
            assertEquals("${DS_PROMETHEUS}", v.path("datasource").path("uid").asText(), v.path("name").asText());
        }
        assertTrue(targets >= 15, "rate, bytes, drops, errors and latency panels: " + targets + " queries");
        String all = String.join("\n", queries(d));
        assertTrue(all.contains("histogram_quantile(0.99"), "latency quantiles");
        assertTrue(all.contains("by (device, queue"), "per device and queue");
    }

    @Test
    void shouldQueryOnlyMetricsThatAScrapeOfEveryDeviceKindHas() throws Exception {
        Set<String> queried = new TreeSet<>();
        for (String q : queries(dashboard())) {
            Matcher m = METRIC.matcher(q);
            while (m.find()) {
                queried.add(m.group());
            }
        }
        Set<String> exposed;
        try (ControlLoop loop = new ControlLoop();
             Backend blk = new Backend("disk0", new BlkDevice(new RamStore(1 << 20, false), 1), BackendOptions.DEFAULT, loop);
             Backend net = new Backend("nic0", new NetDevice(new BenchPorts.Drop(), 1, 0x525400000001L, 1500),
                     BackendOptions.DEFAULT, loop)) {
            MetricsRegistry registry = new MetricsRegistry();
            registry.register(blk);
            registry.register(net);
            try (MetricsServer server = MetricsServer.start(new InetSocketAddress("127.0.0.1", 0), registry)) {
                MetricsScrape scrape = MetricsScrape.of(server.url());
                exposed = scrape.sampleNames();
                Files.writeString(Path.of("target", "metrics-sample.txt"), scrape.text());
            }
        }
        Set<String> missing = new TreeSet<>(queried);
        missing.removeAll(exposed);
        assertTrue(missing.isEmpty(), "the dashboard queries metrics no scrape has: " + missing + "; exposed: " + exposed);
        assertTrue(queried.size() >= 12, "queried: " + queried);
    }
}
