package io.jvhost.cli.bench;

import io.jvhost.perf.BenchOptions;
import io.jvhost.perf.BlkBench;
import io.jvhost.perf.NetBench;

import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/** {@code jvhost bench}: the end-to-end benchmark drivers and the JMH microbenchmarks of {@code perf/}. */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Benchmarks: jvhost side by side with DPDK and qemu-storage-daemon, and JMH microbenchmarks.",
            "Tables are printed and written as CSV/JSON (with the exact commands) under perf/results/."},
        subcommands = {BenchCommand.Net.class, BenchCommand.Blk.class, BenchCommand.Jmh.class})
public final class BenchCommand implements Runnable {
    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }

    /** Session and connection INFO lines would bury the progress lines: keep warnings only. */
    static void quietFramework() {
        if (System.getProperty("org.slf4j.simpleLogger.log.io.jvhost.core") == null) {
            System.setProperty("org.slf4j.simpleLogger.log.io.jvhost.core", "warn");
        }
    }

    /** {@code --runs}, {@code --seconds} and {@code --out}, which every end-to-end benchmark takes. */
    static final class RunOptions {
        @Option(names = "--runs", description = "Runs per side and configuration (default 3).")
        Integer runs;
        @Option(names = "--seconds", description = "Measured seconds per run (default: net 5, blk 3).")
        Integer seconds;
        @Option(names = "--out", description = "Results directory (default perf/results).")
        Path out;

        /** Sets what was given on {@code o}, and the results directory under the checkout; returns {@code o}. */
        <O extends BenchOptions> O applyTo(O o) {
            String home = System.getProperty("jvhost.home");
            o.out = out != null ? out : home == null ? Path.of("perf", "results") : Path.of(home, "perf", "results");
            if (runs != null) o.runs = runs;
            if (seconds != null) o.seconds = seconds;
            return o;
        }
    }

    @Command(name = "net", mixinStandardHelpOptions = true,
            description = {"dpdk-testpmd (net_virtio_user) against jvhost net (in this JVM) and against DPDK's net_vhost,",
                "alternating runs, the two sides pinned to different CPUs. Needs dpdk-testpmd and hugepages."})
    static final class Net implements Callable<Integer> {
        @Option(names = "--quick", description = "One small configuration per direction, one 1-second run each.")
        boolean quick;
        @Option(names = "--dirs", split = ",", description = "g2h (guest to host), h2g, loop (default: all).")
        List<String> dirs;
        @Option(names = "--sizes", split = ",", description = "Frame sizes (default 64,1518).")
        List<Integer> sizes;
        @Option(names = "--mrg", split = ",", description = "mrg_rxbuf values (default 0,1).")
        List<Integer> mrg;
        @Option(names = "--queues", split = ",", description = "Queue pairs (default 1,2).")
        List<Integer> queues;
        @Option(names = "--backends", split = ",", description = "jvhost-event, jvhost-busy, dpdk (default: all).")
        List<String> backends;
        @Mixin
        RunOptions run;

        @Override
        public Integer call() throws Exception {
            quietFramework();
            NetBench.Options o = run.applyTo(quick ? NetBench.Options.quick() : new NetBench.Options());
            if (dirs != null) o.directions = dirs;
            if (sizes != null) o.sizes = sizes;
            if (mrg != null) o.mergeable = mrg;
            if (queues != null) o.queues = queues;
            if (backends != null) o.backends = backends;
            NetBench.run(o, System.out);
            return 0;
        }
    }

    @Command(name = "blk", mixinStandardHelpOptions = true,
            description = {"A Java vhost-user frontend driving jvhost blk (--ram, --file; in this JVM) and qemu-storage-daemon",
                "on the same tmpfs image, alternating runs, the two sides pinned to different CPUs."})
    static final class Blk implements Callable<Integer> {
        @Option(names = "--quick", description = "4 KiB random read at QD 8 on one queue, one 1-second run per target.")
        boolean quick;
        @Option(names = "--workloads", split = ",", description = "randread-4k, randwrite-4k, seqread-128k, seqwrite-128k (default: all).")
        List<String> workloads;
        @Option(names = "--depths", split = ",", description = "Queue depths of the random workloads (default 1,8,32).")
        List<Integer> depths;
        @Option(names = "--queues", split = ",", description = "Request queues (default 1,2).")
        List<Integer> queues;
        @Option(names = "--targets", split = ",", description = "jvhost-ram, jvhost-file, qsd (default: all).")
        List<String> targets;
        @Option(names = "--busy-poll", description = "Run jvhost's pollers in busy-poll mode (default: event mode).")
        boolean busyPoll;
        @Mixin
        RunOptions run;

        @Override
        public Integer call() throws Exception {
            quietFramework();
            BlkBench.Options o = run.applyTo(quick ? BlkBench.Options.quick() : new BlkBench.Options());
            if (workloads != null) o.workloads = workloads;
            if (depths != null) o.depths = depths;
            if (queues != null) o.queues = queues;
            if (targets != null) o.targets = targets;
            o.busyPoll = busyPoll;
            BlkBench.run(o, System.out);
            return 0;
        }
    }

    @Command(name = "jmh", mixinStandardHelpOptions = false,
            description = {"The JMH microbenchmarks; arguments go to JMH (e.g. 'VirtQueueBench -f 1 -i 3', '-l' lists, '-h' helps)."})
    static final class Jmh implements Callable<Integer> {
        @CommandLine.Unmatched
        List<String> args = new java.util.ArrayList<>();

        @Override
        public Integer call() throws Exception {
            org.openjdk.jmh.Main.main(args.toArray(new String[0]));
            return 0;
        }
    }
}
