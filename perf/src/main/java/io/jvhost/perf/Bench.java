package io.jvhost.perf;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * What an end-to-end benchmark ({@link NetBench}, {@link BlkBench}) keeps while it runs: its
 * options, where it prints, the processes it started and the commands to repeat them, and a work
 * directory for sockets and logs. One thread: the one that runs the matrix.
 */
abstract class Bench<O extends BenchOptions> {
    /** Nothing, or the hugepages DPDK and SPDK need (256 of 2 MiB at least) and how to get them. */
    static List<String> missingHugepages() {
        try (var r = Files.newBufferedReader(Path.of("/proc/sys/vm/nr_hugepages"))) {
            if (Long.parseLong(r.readLine().trim()) < 256) {
                return List.of("hugepages (echo 1024 > /proc/sys/vm/nr_hugepages; mount -t hugetlbfs nodev /dev/hugepages)");
            }
            return List.of();
        } catch (IOException | RuntimeException e) {
            return List.of("hugepages (cannot read /proc/sys/vm/nr_hugepages)");
        }
    }

    final O options;
    final PrintStream out;
    final Procs procs = new Procs();
    final Path work;
    /** Measured before each run and kept in the report: a slow run on a far placement is the machine's, not a backend's. */
    final CpuRoundTrip placement;
    private int runCount;

    Bench(String name, O options, PrintStream out) throws IOException {
        this.options = options;
        this.out = out;
        this.work = Files.createTempDirectory("jvhost-bench-" + name);
        this.placement = new CpuRoundTrip(options.frontendCpu, options.backendCpu);
    }

    /** The next run's number, for socket and log names. */
    int nextRun() {
        return runCount++;
    }

    /** An empty table whose meta names the machine, the frontend, the backend CPU and the seconds per run. */
    Report report(String name, String frontend, String... columns) {
        Report report = new Report(name, columns);
        Report.describeMachine(report);
        report.meta("frontend", frontend);
        report.meta("backend_cpu", Integer.toString(options.backendCpu));
        report.meta("seconds_per_run", Integer.toString(options.seconds));
        return report;
    }

    /** Prints the table and writes the results under {@code options.out}; returns {@code report}. */
    Report finish(Report report) throws IOException {
        report.meta("cpu_round_trip_ns", placement.summary());
        out.println();
        report.print(out);
        Path csv = report.write(options.out, procs.commands());
        out.println("\nwritten: " + csv + " (and .json, .commands.txt); logs in " + work);
        return report;
    }

    /** Every queue on one poller: one core, as the reference side's one lcore or iothread. */
    static int[][] onePoller(int queues) {
        int[][] set = new int[1][queues];
        for (int q = 0; q < queues; q++) {
            set[0][q] = q;
        }
        return set;
    }

    /** {@code sets} as {@code --queue-map} takes it, e.g. {@code 0,1:2,3}. */
    static String queueMap(int[][] sets) {
        StringBuilder b = new StringBuilder();
        for (int[] set : sets) {
            b.append(b.length() == 0 ? "" : ":");
            for (int i = 0; i < set.length; i++) {
                b.append(i == 0 ? "" : ",").append(set[i]);
            }
        }
        return b.toString();
    }
}
