package io.jvhost.perf;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@link Report} writes what the committed examples under {@code perf/results/} hold: the same
 * CSV to the byte (columns, six significant digits, empty for a missing value) and the same JSON
 * document (benchmark, meta, rows, commands), so older and newer results read alike.
 */
class ReportTest {
    private static final JsonMapper JSON = new JsonMapper();

    @TempDir
    Path dir;

    @ParameterizedTest
    @ValueSource(strings = {"net-20261125-020237", "blk-20261125-021010"})
    void shouldWriteTheCommittedExampleAgainWhenGivenItsRows(String example) throws Exception {
        Path results = Path.of("results");
        JsonNode committed = JSON.readTree(results.resolve(example + ".json").toFile());
        String committedCsv = Files.readString(results.resolve(example + ".csv"));
        Report report = new Report(committed.get("benchmark").asText(), committedCsv.lines().findFirst().orElseThrow().split(","));
        for (Map.Entry<String, JsonNode> m : committed.get("meta").properties()) {
            report.meta(m.getKey(), m.getValue().asText());
        }
        for (JsonNode row : committed.get("rows")) {
            List<Object> values = new ArrayList<>();
            for (Map.Entry<String, JsonNode> cell : row.properties()) {
                JsonNode v = cell.getValue();
                values.add(v.isNull() ? Double.NaN : v.isIntegralNumber() ? v.longValue() : v.isNumber() ? v.doubleValue() : v.asText());
            }
            report.add(values.toArray());
        }
        List<String> commands = new ArrayList<>();
        committed.get("commands").forEach(c -> commands.add(c.asText()));

        Path csv = report.write(dir, commands);

        assertEquals(committedCsv, Files.readString(csv), "CSV");
        String base = csv.getFileName().toString().replace(".csv", "");
        assertEquals(committed, JSON.readTree(dir.resolve(base + ".json").toFile()), "JSON");
        assertEquals(String.join("\n", commands) + "\n", Files.readString(dir.resolve(base + ".commands.txt")));
    }

    @Test
    void shouldQuoteOnlyCellsWithCommasOrQuotesAndLeaveMissingNumbersEmptyWhenWritingCsv() throws Exception {
        Report report = new Report("t", "name", "spread%", "n", "ratio");
        report.add("a,b", 1.5, 7L, Double.NaN);
        report.add("say \"hi\"", Double.POSITIVE_INFINITY, 0, 1234567.0);

        Path csv = report.write(dir, List.of("echo 1"));

        assertEquals("name,spread%,n,ratio\n\"a,b\",1.50000,7,\n\"say \"\"hi\"\"\",,0,1.23457e+06\n",
                Files.readString(csv, StandardCharsets.UTF_8));
        JsonNode rows = JSON.readTree(dir.resolve(csv.getFileName().toString().replace(".csv", ".json")).toFile()).get("rows");
        assertEquals(true, rows.get(0).get("ratio").isNull(), "NaN is null in JSON");
        assertEquals(true, rows.get(1).get("spread%").isNull(), "infinity is null in JSON");
        assertEquals("say \"hi\"", rows.get(1).get("name").asText());
    }
}
