package io.jvhost.testkit;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Assumptions;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/** One scrape of a /metrics endpoint, as Prometheus takes it, and lookups in its text. */
public record MetricsScrape(String text) {
    public static final Path PROMTOOL = Path.of("/usr/bin/promtool");

    /** GETs {@code url} with Prometheus's text-format Accept header; fails unless 200. */
    public static MetricsScrape of(String url) throws IOException, InterruptedException {
        try (HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build()) {
            HttpResponse<String> r = client.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10))
                    .header("Accept", "text/plain;version=0.0.4;q=0.9,*/*;q=0.1").build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode(), r.body());
            return new MetricsScrape(r.body());
        }
    }

    /**
     * The value of the one sample called {@code name} whose labels include every {@code k, v} pair
     * given; fails if there is none or more than one.
     */
    public double value(String name, String... labels) {
        List<String> hits = new ArrayList<>();
        for (String line : text.split("\n")) {
            if (line.startsWith("#") || !(line.startsWith(name + "{") || line.startsWith(name + " "))) {
                continue;
            }
            boolean all = true;
            for (int i = 0; i < labels.length; i += 2) {
                all &= line.contains(labels[i] + "=\"" + labels[i + 1] + "\"");
            }
            if (all) {
                hits.add(line);
            }
        }
        if (hits.size() != 1) {
            fail(hits.size() + " samples " + name + " " + List.of(labels) + ": " + hits + "\n" + text);
        }
        String line = hits.get(0);
        return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
    }

    /** Every sample name in the scrape ({@code _bucket}, {@code _sum}, {@code _count} included). */
    public Set<String> sampleNames() {
        Set<String> names = new LinkedHashSet<>();
        for (String line : text.split("\n")) {
            if (!line.isBlank() && !line.startsWith("#")) {
                int end = line.indexOf('{');
                names.add(line.substring(0, end >= 0 ? end : line.indexOf(' ')));
            }
        }
        return names;
    }

    /**
     * Runs {@code promtool check metrics} (Debian package prometheus) on the scrape and returns its
     * exit status and output. Without promtool: fails on CI ({@code .ci/run} installs it), else skips loudly.
     */
    public PromtoolResult promtool() throws IOException, InterruptedException {
        if (!Files.isExecutable(PROMTOOL)) {
            if (HostPackages.onCi()) {
                fail("promtool missing on CI: apt-get install prometheus");
            }
            System.err.println("\n" + "#".repeat(78) + "\n#  SKIPPED: promtool check metrics (apt-get install prometheus)\n"
                    + "#".repeat(78) + "\n");
            Assumptions.abort("promtool missing: apt-get install prometheus");
        }
        Process p = new ProcessBuilder(PROMTOOL.toString(), "check", "metrics").redirectErrorStream(true).start();
        try (var in = p.getOutputStream()) {
            in.write(text.getBytes(StandardCharsets.UTF_8));
        }
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(30, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail("promtool did not finish");
        }
        return new PromtoolResult(p.exitValue(), out);
    }

    public record PromtoolResult(int exitStatus, String output) {}
}
