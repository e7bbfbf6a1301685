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

/**
 * A result table: printed aligned, and written as {@code NAME-TIMESTAMP.csv}, {@code .json} (rows,
 * machine, options, commands) and {@code .commands.txt} under the results directory.
 */
public final class Report {
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
        StringBuilder b = new StringBuilder(String.join(",", columns)).append('\n');
        for (List<Object> r : rows) {
            for (int c = 0; c < r.size(); c++) {
                b.append(c == 0 ? "" : ",").append(csvValue(r.get(c)));
            }
            b.append('\n');
        }
        Files.writeString(csv, b, StandardCharsets.UTF_8);
        Files.writeString(dir.resolve(name + "-" + stamp + ".json"), json(commands), StandardCharsets.UTF_8);
        Files.writeString(dir.resolve(name + "-" + stamp + ".commands.txt"), String.join("\n", commands) + "\n",
                StandardCharsets.UTF_8);
        return csv;
    }

    private static String csvValue(Object v) {
        if (v instanceof Double d) {
            return d.isNaN() ? "" : String.format(Locale.ROOT, "%.6g", d);
        }
        String s = v == null ? "" : v.toString();
        return s.contains(",") || s.contains("\"") ? "\"" + s.replace("\"", "\"\"") + "\"" : s;
    }

    private String json(List<String> commands) {
        StringBuilder b = new StringBuilder("{\n  \"benchmark\": ").append(str(name)).append(",\n  \"meta\": {");
        int i = 0;
        for (Map.Entry<String, String> e : meta.entrySet()) {
            b.append(i++ == 0 ? "\n    " : ",\n    ").append(str(e.getKey())).append(": ").append(str(e.getValue()));
        }
        b.append("\n  },\n  \"rows\": [");
        for (int r = 0; r < rows.size(); r++) {
            b.append(r == 0 ? "\n    {" : ",\n    {");
            for (int c = 0; c < columns.size(); c++) {
                Object v = rows.get(r).get(c);
                b.append(c == 0 ? "" : ", ").append(str(columns.get(c))).append(": ");
                if (v instanceof Double d) {
                    b.append(d.isNaN() || d.isInfinite() ? "null" : String.format(Locale.ROOT, "%.6g", d));
                } else if (v instanceof Number n) {
                    b.append(n);
                } else {
                    b.append(v == null ? "null" : str(v.toString()));
                }
            }
            b.append('}');
        }
        b.append("\n  ],\n  \"commands\": [");
        for (int c = 0; c < commands.size(); c++) {
            b.append(c == 0 ? "\n    " : ",\n    ").append(str(commands.get(c)));
        }
        return b.append("\n  ]\n}\n").toString();
    }

    private static String str(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\t' -> b.append("\\t");
                default -> {
                    if (ch < 0x20) {
                        b.append(String.format("\\u%04x", (int) ch));
                    } else {
                        b.append(ch);
                    }
                }
            }
        }
        return b.append('"').toString();
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
