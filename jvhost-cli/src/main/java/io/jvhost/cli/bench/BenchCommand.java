package io.jvhost.cli.bench;

import io.jvhost.cli.Failure;
import io.jvhost.cli.ServeOptions;
import io.jvhost.perf.BenchOptions;
import io.jvhost.perf.BlkBench;
import io.jvhost.perf.NetBench;
import io.jvhost.perf.Report;
import io.jvhost.perf.SpdkVhost;
import io.jvhost.perf.TcpBench;
import io.jvhost.perf.VxlanBench;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.function.Supplier;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code jvhost bench}: the end-to-end benchmark drivers and the JMH microbenchmarks of {@code perf/}. */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = {"Benchmarks: jvhost side by side with DPDK and qemu-storage-daemon, and JMH microbenchmarks.",
            "Tables are printed and written as CSV/JSON (with the exact commands) under perf/results/."},
        subcommands = {BenchCommand.Net.class, BenchCommand.Blk.class, BenchCommand.Tcp.class, BenchCommand.Vxlan.class,
            BenchCommand.Jmh.class})
public final class BenchCommand implements Runnable {
    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }

    /** {@code --quick}, {@code --queues}, {@code --runs}, {@code --seconds} and {@code --out}, which every end-to-end benchmark takes. */
    static final class RunOptions {
        @Option(names = "--quick", description = "A few seconds in all: the smallest configuration, one queue, one 1-second run per side.") boolean quick;
        @Option(names = "--queues", split = ",", description = "Queue pairs (net) or request queues (blk) (default 1,2).") List<Integer> queues;
        @Option(names = "--runs", description = "Runs per side and configuration (default 3).") Integer runs;
        @Option(names = "--seconds", description = "Measured seconds per run (default: net 5, blk 3).") Integer seconds;
        @Option(names = "--out", description = "Results directory (default perf/results).") Path out;

        /**
         * The benchmark's options: its {@code --quick} presets or its defaults, with what was given
         * here over them, and the results directory under the checkout unless {@code --out} says.
         */
        <O extends BenchOptions> O options(Supplier<O> defaults, Supplier<O> quickPresets) {
            O o = quick ? quickPresets.get() : defaults.get();
            String home = System.getProperty("jvhost.home");
            o.out = out != null ? out : home == null ? Path.of("perf", "results") : Path.of(home, "perf", "results");
            if (queues != null) o.queues = queues;
            if (runs != null) o.runs = runs;
            if (seconds != null) o.seconds = seconds;
            return o;
        }
    }

    /** An end-to-end benchmark as a subcommand: {@link RunOptions}, the subcommand's own options over them, then the run. */
    abstract static class EndToEnd<O extends BenchOptions> implements Callable<Integer> {
        /** {@code NetBench::run} or {@code BlkBench::run}. */
        interface Runner<T> {
            Report run(T options, PrintStream out) throws Exception;
        }

        @Mixin
        RunOptions run;
        @Spec
        CommandSpec spec;
        private final Supplier<O> defaults, quickPresets;
        private final Runner<O> runner;

        EndToEnd(Supplier<O> defaults, Supplier<O> quickPresets, Runner<O> runner) {
            this.defaults = defaults;
            this.quickPresets = quickPresets;
            this.runner = runner;
        }

        /** Puts the subcommand's own options, where given, on {@code o}. */
        abstract void given(O o);

        /** {@code given} unless it names something not in {@code known}: a usage error saying what the names are. */
        List<String> known(String option, List<String> given, List<String> known) {
            for (String g : given) {
                if (!known.contains(g)) {
                    throw new ParameterException(spec.commandLine(), option + ": no " + g + "; give some of "
                            + String.join(", ", known));
                }
            }
            return given;
        }

        /** The options as the command line asks for them. */
        O options() {
            O o = run.options(defaults, quickPresets);
            given(o);
            return o;
        }

        @Override
        public Integer call() throws Exception {
            // Session and connection INFO lines would bury the progress lines: keep warnings only.
            if (System.getProperty("org.slf4j.simpleLogger.log.io.jvhost.core") == null) {
                System.setProperty("org.slf4j.simpleLogger.log.io.jvhost.core", "warn");
            }
            O o = options(); // a usage mistake is told first, whatever the machine lacks
            checkMachine();
            runner.run(o, System.out);
            return 0;
        }

        /** Says in one {@link Failure} what this machine lacks for the benchmark; nothing by default. */
        void checkMachine() throws IOException {
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

    @Command(name = "net", mixinStandardHelpOptions = true,
            description = {"dpdk-testpmd (net_virtio_user) against jvhost net (in this JVM) and against DPDK's net_vhost",
                "(on hugepages, one forwarding lcore), alternating runs, the two sides pinned to different CPUs, with each",
                "backend's CPU time per packet. Needs dpdk-testpmd and hugepages."})
    static final class Net extends EndToEnd<NetBench.Options> {
        @Option(names = "--dirs", split = ",", description = "g2h (guest to host), h2g, loop (default: all).") List<String> dirs;
        @Option(names = "--sizes", split = ",", description = "Frame sizes (default 64,1518).") List<Integer> sizes;
        @Option(names = "--mrg", split = ",", description = "mrg_rxbuf values (default 0,1).") List<Integer> mrg;
        @Option(names = "--backends", split = ",", description = {"jvhost-adaptive (the CLI's default idle mode), jvhost-busy, dpdk (default: these three),",
            "jvhost-event (sleep on kicks at once), and dpdk-nohuge: DPDK without hugepages (--no-huge),",
            "as the tables before issue 17 ran it."}) List<String> backends;
        @Option(names = "--rings", split = ",", description = "split, packed (the frontend's packed_vq=1) (default split).") List<String> rings;

        Net() {
            super(NetBench.Options::new, NetBench.Options::quick, NetBench::run);
        }

        @Override
        void checkMachine() throws IOException {
            checkHugepages(NetBench.missing(), Path.of("/proc/mounts"), Path.of("/dev/hugepages"));
        }

        /**
         * Says in one line what keeps dpdk-testpmd from running: a missing tool, no hugepages
         * reserved, no hugetlbfs on {@code pages}, or no permission to use it.
         */
        static void checkHugepages(List<String> missing, Path mounts, Path pages) throws IOException {
            if (!missing.isEmpty()) {
                throw new Failure("needs " + String.join(", ", missing) + " (as root, ./jvhost bench sets these up)");
            }
            boolean mounted = Files.readAllLines(mounts).stream()
                    .map(l -> l.split(" ")).anyMatch(f -> f.length > 2 && f[1].equals(pages.toString()) && f[2].equals("hugetlbfs"));
            if (!mounted) {
                throw new Failure("no hugetlbfs on " + pages + " for dpdk-testpmd (as root: mkdir -p " + pages
                        + "; mount -t hugetlbfs nodev " + pages + ")");
            }
            if (!Files.isWritable(pages)) {
                throw new Failure("no permission to use the hugepages in " + pages + " (dpdk-testpmd maps them there):"
                        + " run as root, or mount hugetlbfs with uid=" + System.getProperty("user.name") + " (mount -t hugetlbfs -o uid=...)");
            }
        }

        @Override
        void given(NetBench.Options o) {
            if (dirs != null) o.directions = dirs;
            if (sizes != null) o.sizes = sizes;
            if (mrg != null) o.mergeable = mrg;
            if (backends != null) o.backends = known("--backends", backends, NetBench.BACKENDS);
            if (rings != null) o.rings = known("--rings", rings, List.of("split", "packed"));
        }
    }

    @Command(name = "tcp", mixinStandardHelpOptions = true,
            description = {"A real guest's TCP throughput (iperf3, both ways) through a TAP: jvhost with offloads, jvhost",
                "--no-offload, and QEMU's own userspace virtio-net on a TAP (-netdev tap,vhost=off), alternating runs.",
                "Each run boots a TCG guest; the TAP's host side lives in a network namespace of the bench's own."})
    static final class Tcp extends EndToEnd<TcpBench.Options> {
        @Option(names = "--sides", split = ",", description = {"jvhost, jvhost-no-offload, qemu-tap, qemu-tap-intx, jvhost-event (default: the first",
            "three; jvhost-event is jvhost with offloads in event idle mode, whatever --idle says)."}) List<String> sides;
        @Option(names = "--idle", paramLabel = "MODE", description = "What jvhost's pollers do when idle: adaptive (default, as the CLI), event or busy.")
        String idle;
        @Option(names = "--coalesce-frames", paramLabel = "N", description = "Call coalescing on jvhost's queues, as on the net command (default: off).")
        int coalesceFrames;
        @Option(names = "--coalesce-usecs", paramLabel = "US", description = "With --coalesce-frames: hold a call at most this long (default 50).")
        long coalesceUsecs = 50;

        Tcp() {
            super(TcpBench.Options::new, TcpBench.Options::quick, TcpBench::run);
        }

        @Override
        void checkMachine() {
            List<String> missing = TcpBench.missing();
            if (!missing.isEmpty()) {
                throw new Failure("needs apt-get install " + String.join(" ", missing) + " (as root, ./jvhost bench installs them)");
            }
        }

        @Override
        void given(TcpBench.Options o) {
            if (sides != null) o.sides = known("--sides", sides, List.of("jvhost", "jvhost-no-offload", "qemu-tap", "qemu-tap-intx", "jvhost-event"));
            o.idle = ServeOptions.idleMode(idle, false, spec::commandLine);
            if (coalesceFrames < 0 || coalesceUsecs < 0) {
                throw new ParameterException(spec.commandLine(), "--coalesce-frames and --coalesce-usecs must be >= 0");
            }
            o.coalesceFrames = coalesceFrames;
            o.coalesceUsecs = coalesceUsecs;
        }
    }

    @Command(name = "vxlan", mixinStandardHelpOptions = true,
            description = {"VXLAN encapsulation and decapsulation per CPU core: the switch's VXLAN port against a Linux vxlan",
                "link in a bridge, over veth pairs in network namespaces of the bench's own, alternating runs."})
    static final class Vxlan extends EndToEnd<VxlanBench.Options> {
        @Option(names = "--sizes", split = ",", description = "Frame sizes (default 64,1518).") List<Integer> sizes;
        @Option(names = "--dirs", split = ",", description = "encap, decap (default both).") List<String> dirs;

        Vxlan() {
            super(VxlanBench.Options::new, VxlanBench.Options::quick, VxlanBench::run);
        }

        @Override
        void given(VxlanBench.Options o) {
            if (sizes != null) o.sizes = sizes;
            if (dirs != null) o.directions = dirs;
        }
    }

    @Command(name = "blk", mixinStandardHelpOptions = true,
            description = {"A Java vhost-user frontend driving jvhost blk (--ram, --file, --null, --rbd, --nbd; in this JVM) and",
                "qemu-storage-daemon (the same tmpfs image, null-co, null-co with read-zeroes, the same RBD image or NBD",
                "export), alternating runs, the two sides pinned to different CPUs, with each backend's CPU time per request."})
    static final class Blk extends EndToEnd<BlkBench.Options> {
        @Option(names = "--workloads", split = ",", description = "randread-4k, randwrite-4k, seqread-128k, seqwrite-128k (default: all).") List<String> workloads;
        @Option(names = "--idle", paramLabel = "MODE", description = {"What jvhost's pollers do when idle: adaptive (default, as the CLI:",
            "spin 5 us after work, yield until 100 us, then sleep; qemu-storage-daemon's iothread polls up to 32 us the same way), event or busy."})
        String idle;
        @Option(names = "--busy-poll", description = "The same as --idle busy.") boolean busyPoll;
        @Option(names = "--adaptive", hidden = true, description = "The same as --idle adaptive (the default; earlier RESULTS commands give it).")
        boolean adaptive;
        @Option(names = "--depths", split = ",", description = "Queue depths of the random workloads (default 1,8,32,128).") List<Integer> depths;
        @Option(names = "--targets", split = ",", description = {"jvhost-ram, jvhost-file (default I/O engine: inline on tmpfs, else io_uring), jvhost-file-uring,",
            "jvhost-file-threads, jvhost-null, qsd, qsd-uring, qsd-null, qsd-null-zeroes (default: these but jvhost-file-uring and",
            "-threads), and on request jvhost-ram-written (the RAM disk with every page written first: reads copy),",
            "jvhost-rbd, qsd-rbd (a dev Ceph cluster the run starts: scripts/dev-ceph.sh) and jvhost-nbd, qsd-nbd (a qemu-nbd",
            "the run starts). Each jvhost target is compared with its like: file and file-uring with qsd-uring (aio=io_uring),",
            "file-threads with qsd (aio=threads), null with qsd-null (null-co), ram and ram-written with",
            "qsd-null-zeroes (null-co,read-zeroes=on), rbd with qsd-rbd, nbd with qsd-nbd; and spdk-null (SPDK's vhost target on a null bdev;",
            "needs --spdk), null's second like (the ref2 columns)."}) List<String> targets;
        @Option(names = "--spdk", paramLabel = "PATH", description = {"SPDK's vhost target for spdk-null: its build/bin/vhost, or its source tree",
            "(scripts/build-spdk.sh builds one; SPDK is not packaged for Debian)."}) Path spdk;
        @Option(names = "--guest-hugepages", description = {"The frontend's guest RAM on 2 MiB hugepages for every target, as VMs backed by",
            "hugepages have it (always so when spdk-null runs: SPDK needs it)."}) boolean guestHugepages;

        @Option(names = "--image-dir", description = {"Where the bench makes its image (default /dev/shm). tmpfs has no RWF_NOWAIT, so io_uring",
            "hands every request on it to a kernel worker; on ext4 or xfs page-cache hits complete inline."}) Path imageDir;
        @Option(names = "--no-event-idx", description = {"The frontend refuses EVENT_IDX and relies on VRING_USED_F_NO_NOTIFY alone",
            "(the bench's frontend before 2026-12-06; qemu-storage-daemon then takes a kick for nearly every batch)."}) boolean noEventIdx;

        @Override
        void given(BlkBench.Options o) {
            if (workloads != null) o.workloads = workloads;
            o.idle = ServeOptions.idleMode(idle, busyPoll, spec::commandLine);
            o.eventIdx = !noEventIdx;
            if (imageDir != null) o.imageDir = imageDir;
            if (depths != null) o.depths = depths;
            if (targets != null) o.targets = known("--targets", targets, BlkBench.TARGETS);
            o.spdk = spdk;
            o.guestHugepages = guestHugepages;
        }

        /** Says in one line what {@code spdk-null} lacks when it is asked for: SPDK's vhost target (--spdk), hugepages. */
        @Override
        void checkMachine() {
            if (targets != null && targets.contains("spdk-null")) {
                List<String> missing = SpdkVhost.missing(spdk);
                if (!missing.isEmpty()) {
                    throw new Failure("needs " + String.join(", ", missing));
                }
            }
        }

        Blk() {
            super(BlkBench.Options::new, BlkBench.Options::quick, BlkBench::run);
        }
    }
}
