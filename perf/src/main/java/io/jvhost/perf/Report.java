package io.jvhost.perf;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.core.util.DefaultIndenter;
import com.fasterxml.jackson.core.util.DefaultPrettyPrinter;
import com.fasterxml.jackson.core.util.Separators;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.SerializerProvider;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.module.SimpleModule;
import com.fasterxml.jackson.databind.ser.std.StdSerializer;
import com.fasterxml.jackson.dataformat.csv.CsvGenerator;
import com.fasterxml.jackson.dataformat.csv.CsvMapper;
import com.fasterxml.jackson.dataformat.csv.CsvSchema;

/**
 * A result table: printed aligned, and written as {@code NAME-TIMESTAMP.csv}, {@code .json} (rows,
 * machine, options, commands) and {@code .commands.txt} under the results directory.
 */
public final class Report {
    /** Doubles with six significant digits ({@code %.6g}), as the committed results have them. */
    private static final class SixDigits extends StdSerializer<Double> {
        SixDigits() {
            super(Double.class);
        }

        @Override
        public void serialize(Double value, JsonGenerator gen, SerializerProvider provider) throws IOException {
            gen.writeNumber(String.format(Locale.ROOT, "%.6g", value));
        }
    }

    private static final SimpleModule NUMBERS = new SimpleModule("jvhost-report").addSerializer(Double.class, new SixDigits());
    private static final JsonMapper JSON = JsonMapper.builder().addModule(NUMBERS)
            .enable(SerializationFeature.INDENT_OUTPUT)
            .defaultPrettyPrinter(new DefaultPrettyPrinter()
                    .withSeparators(Separators.createDefaultInstance().withObjectFieldValueSpacing(Separators.Spacing.AFTER))
                    .withObjectIndenter(new DefaultIndenter("  ", "\n"))
                    .withArrayIndenter(new DefaultIndenter("  ", "\n")))
            .build();
    /** Quotes only what must be quoted (a comma, a quote, a line break), so headers such as spread% stay bare. */
    private static final CsvMapper CSV = CsvMapper.builder().addModule(NUMBERS)
            .enable(CsvGenerator.Feature.STRICT_CHECK_FOR_QUOTING)
            .build();

    private final String name;
    private final List<String> columns;
    private final List<List<Object>> rows = new ArrayList<>();
    private final Map<String, String> meta = new LinkedHashMap<>();

    public Report(String name, String... columns) {
        this.name = name;
        this.columns = List.of(columns);
    }

    public void meta(String key, String value) {
        meta.put(key, value);
    }

    public void add(Object... values) {
        if (values.length != columns.size()) {
            throw new IllegalArgumentException(values.length + " values for " + columns.size() + " columns");
        }
        rows.add(Arrays.asList(values));
    }

    public List<List<Object>> rows() {
        return rows;
    }

    public int column(String c) {
        return columns.indexOf(c);
    }

    static String format(Object v) {
        if (v == null) {
            return "";
        }
        if (v instanceof Double d) {
            if (d.isNaN()) {
                return "-";
            }
            double a = Math.abs(d);
            return String.format(Locale.ROOT, a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : a >= 0.1 ? "%.2f" : "%.3f", d);
        }
        return v.toString();
    }

    public void print(PrintStream out) {
        int[] width = new int[columns.size()];
        for (int c = 0; c < width.length; c++) {
            width[c] = columns.get(c).length();
            for (List<Object> r : rows) {
                width[c] = Math.max(width[c], format(r.get(c)).length());
            }
        }
        StringBuilder b = new StringBuilder();
        for (int c = 0; c < width.length; c++) {
            b.append(String.format("%-" + width[c] + "s  ", columns.get(c)));
        }
        out.println(b.toString().stripTrailing());
        out.println("-".repeat(b.toString().stripTrailing().length()));
        for (List<Object> r : rows) {
            b.setLength(0);
            for (int c = 0; c < width.length; c++) {
                Object v = r.get(c);
                String s = format(v);
                b.append(v instanceof Number ? String.format("%" + width[c] + "s  ", s) : String.format("%-" + width[c] + "s  ", s));
            }
            out.println(b.toString().stripTrailing());
        }
    }

    /** Writes CSV, JSON and the command list; returns the CSV path. */
    public Path write(Path dir, List<String> commands) throws IOException {
        Files.createDirectories(dir);
        String stamp = LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss"));
        Path csv = dir.resolve(name + "-" + stamp + ".csv");
        List<Map<String, Object>> records = records();
        CsvSchema.Builder schema = CsvSchema.builder().setUseHeader(true);
        columns.forEach(schema::addColumn);
        CSV.writer(schema.build()).writeValues(csv.toFile()).writeAll(records).close();
        Map<String, Object> document = new LinkedHashMap<>();
        document.put("benchmark", name);
        document.put("meta", meta);
        document.put("rows", records);
        document.put("commands", commands);
        Files.writeString(dir.resolve(name + "-" + stamp + ".json"), JSON.writeValueAsString(document) + "\n",
                StandardCharsets.UTF_8);
        Files.writeString(dir.resolve(name + "-" + stamp + ".commands.txt"), String.join("\n", commands) + "\n",
                StandardCharsets.UTF_8);
        return csv;
    }

    /** The rows as column-to-value maps; a value that is not a finite number is left empty (null). */
    private List<Map<String, Object>> records() {
        List<Map<String, Object>> records = new ArrayList<>(rows.size());
        for (List<Object> r : rows) {
            Map<String, Object> record = new LinkedHashMap<>();
            for (int c = 0; c < columns.size(); c++) {
                Object v = r.get(c);
                record.put(columns.get(c), v instanceof Double d && !Double.isFinite(d) ? null : v);
            }
            records.add(record);
        }
        return records;
    }

    /**
     * Median over rounds of {@code values[r] / reference[r]}: each round runs every backend back
     * to back, so a ratio within a round cancels the machine's slow and fast phases (on these
     * shared 2-CPU machines throughput can halve for minutes), which a ratio of medians does not.
     */
    public static double pairedRatio(double[] values, double[] reference) {
        double[] ratios = new double[Math.min(values.length, reference.length)];
        for (int r = 0; r < ratios.length; r++) {
            ratios[r] = values[r] / reference[r];
        }
        return median(ratios);
    }

    /** Median of {@code values} (NaN when empty). */
    public static double median(double[] values) {
        double[] v = Arrays.stream(values).filter(d -> !Double.isNaN(d)).sorted().toArray();
        if (v.length == 0) {
            return Double.NaN;
        }
        return v.length % 2 == 1 ? v[v.length / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    }

    public static double min(double[] values) {
        return Arrays.stream(values).filter(d -> !Double.isNaN(d)).min().orElse(Double.NaN);
    }

    public static double max(double[] values) {
        return Arrays.stream(values).filter(d -> !Double.isNaN(d)).max().orElse(Double.NaN);
    }

    /** The machine, for the report: CPUs, model, kernel, load, JVM. */
    static void describeMachine(Report r) {
        r.meta("date", LocalDateTime.now().toString());
        r.meta("cpus", Integer.toString(Runtime.getRuntime().availableProcessors()));
        try {
            String model = Files.readAllLines(Path.of("/proc/cpuinfo")).stream().filter(l -> l.startsWith("model name"))
                    .findFirst().map(l -> l.substring(l.indexOf(':') + 1).trim()).orElse("?");
            r.meta("cpu", model);
            r.meta("loadavg", Files.readString(Path.of("/proc/loadavg")).trim());
            r.meta("kernel", Files.readString(Path.of("/proc/sys/kernel/osrelease")).trim());
        } catch (IOException e) {
            r.meta("cpu", "?");
        }
        r.meta("jvm", System.getProperty("java.vm.name") + " " + System.getProperty("java.version"));
        String home = System.getProperty("jvhost.home", ".");
        try {
            Process git = new ProcessBuilder("git", "-C", home, "describe", "--always", "--dirty").redirectErrorStream(true).start();
            r.meta("git", new String(git.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8).trim());
        } catch (IOException e) {
            r.meta("git", "?");
        }
    }
}
