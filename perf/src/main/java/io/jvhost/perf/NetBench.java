package io.jvhost.perf;

import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.runtime.PollerLoad;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.net.BenchPorts;
import io.jvhost.net.NetCounters;
import io.jvhost.net.NetDevice;
import io.jvhost.net.NetPort;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * net: jvhost against DPDK's vhost PMD with the same frontend, {@code dpdk-testpmd} with
 * {@code net_virtio_user}, in the same run.
 *
 * <p>Directions: {@code g2h} (guest to host: testpmd txonly into jvhost {@code --drop} / DPDK
 * rxonly), {@code h2g} (host to guest: jvhost {@code --generate} / DPDK txonly into testpmd
 * rxonly), {@code loop} (testpmd io with --tx-first through jvhost {@code --reflect} / DPDK
 * macswap). Throughput is what the frontend's per-second statistics show (Tx-pps for g2h, Rx-pps
 * otherwise): the run's value is the median of its samples after one warm-up second; a row is the
 * median over runs, which alternate between backends; {@code vs_dpdk} is the median of the
 * per-round ratios ({@link Report#pairedRatio}). jvhost runs in this JVM, its poller threads
 * pinned with taskset to the backend CPU; the frontend and DPDK's backend are pinned processes.
 *
 * <p>Backends: {@code jvhost-adaptive} (the CLI's default idle mode, as users run it),
 * {@code jvhost-busy}, {@code dpdk} (testpmd's net_vhost as DPDK users run it: hugepages from
 * /dev/hugepages in one file per segment, preallocated, and one forwarding lcore on the backend
 * CPU) and, only when asked for, {@code jvhost-event} (sleep on kicks at once) and
 * {@code dpdk-nohuge} (DPDK on anonymous 4 KiB pages, {@code --no-huge}: what earlier tables
 * compared against).
 *
 * <p>{@code cpu_ns/pkt}: the CPU time the backend used per packet of the run's rate: its CPU time
 * over the measured window (the {@code seconds} after the warm-up) divided by the window's wall
 * time, i.e. the cores it kept busy, over the run's packets per second (the {@code Mpps} the row
 * reports, testpmd's own per-second rates). For jvhost the CPU time of its poller threads
 * ({@link CpuTime#threads}), for DPDK the whole testpmd process's ({@link CpuTime#process}).
 * CPU time and wall time are read together by the driver, so a driver thread that is scheduled
 * late (both CPUs are busy polling) shifts the window but not the ratio; packet counts read off
 * testpmd's statistics blocks could not be aligned with them as well (its blocks come 1 or 2 s
 * apart, and the driver sees them late). {@code cpu_vs_dpdk} is the median of per-round ratios
 * (lower is cheaper).
 *
 * <p>{@code busy_ns/pkt}: what a packet costs the backend when it is not waiting, whatever the
 * frontend's pace. With busy polling both backends always use a whole core, so {@code cpu_ns/pkt}
 * is only the rate's inverse; busy time counts the polls that moved packets and not the empty
 * ones, as SPDK's reactors and testpmd's {@code --record-core-cycles} count it. For jvhost the
 * pollers' busy time over the measured window ({@link io.jvhost.core.runtime.PollerLoad}) over the
 * packets the device moved in it (from the guest for g2h and loop, to it for h2g); for DPDK
 * testpmd's busy cycles per packet over its whole run (it prints them at exit), in nanoseconds at
 * its TSC's clock; none for DPDK's h2g backend, whose txonly engine counts every poll as busy, even
 * before the frontend connects or while the ring is full. {@code fe_busy%}: the share of the
 * frontend's time spent in polls that moved packets (testpmd's busy cycles per packet over its
 * run times the run's rate): near 100 % the frontend, not the backend, sets the rate (none for
 * g2h, where the frontend runs txonly).
 */
public final class NetBench extends Bench<NetBench.Options> {
    private static final Pattern RX_PPS = Pattern.compile("Rx-pps:\\s+(\\d+)");
    private static final Pattern TX_PPS = Pattern.compile("Tx-pps:\\s+(\\d+)");
    /** testpmd's {@code --record-core-cycles} line at exit: busy cycles per packet and the TSC's MHz. */
    private static final Pattern CYCLES = Pattern.compile("CPU cycles/packet=([0-9.]+) .*? at (\\d+) MHz Clock");
    private static final Pattern TOTALS = Pattern.compile(
            "Accumulated forward statistics.*?RX-packets:\\s+(\\d+).*?TX-packets:\\s+(\\d+)", Pattern.DOTALL);
    static final String TESTPMD = "/usr/bin/dpdk-testpmd";
    static final long GUEST_MAC = 0x52_54_00_12_34_56L;

    /** Every backend this benchmark knows; {@code jvhost-event} and {@code dpdk-nohuge} run only when asked for. */
    public static final List<String> BACKENDS = List.of("jvhost-adaptive", "jvhost-busy", "jvhost-event", "dpdk",
            "dpdk-nohuge");

    /** What to run; fields as the CLI fills them. */
    public static final class Options extends BenchOptions {
        public List<String> directions = List.of("g2h", "h2g", "loop");
        public List<Integer> sizes = List.of(64, 1518);
        public List<Integer> mergeable = List.of(0, 1);
        public List<String> backends = List.of("jvhost-adaptive", "jvhost-busy", "dpdk");
        /** Ring layouts the frontend asks for: split, and packed (virtio-user packed_vq=1). */
        public List<String> rings = List.of("split");

        public Options() {
            super(5);
        }

        /** A few seconds in all: one small configuration per direction, one run each. */
        public static Options quick() {
            Options o = new Options();
            o.sizes = List.of(64);
            o.mergeable = List.of(1);
            o.backends = List.of("jvhost-adaptive", "dpdk");
            o.quick(0);
            return o;
        }
    }

    /**
     * Where net_vhost's memory comes from for the {@code dpdk} backend: 256 MB preallocated, in
     * hugepage files of one segment each (DPDK 22.11 refuses {@code --huge-unlink} with
     * {@code --single-file-segments}; testpmd removes the files when it exits on SIGTERM).
     */
    static final List<String> DPDK_HUGEPAGES = List.of("--huge-dir", "/dev/hugepages", "--single-file-segments",
            "-m", "256");
    /**
     * mbufs for the {@code dpdk} backend, about 40 MB of the 256: far more than one forwarding lcore
     * holds at once (a 32-packet burst per queue, a 250-mbuf cache), so allocation never waits.
     */
    static final int DPDK_MBUFS = 16384;
    /** The {@code dpdk-nohuge} backend, as the tables before issue 17 ran DPDK. */
    static final List<String> DPDK_NO_HUGEPAGES = List.of("--no-huge", "-m", "512");
    static final int DPDK_NO_HUGEPAGES_MBUFS = 8192;

    /**
     * One run's outcome; {@code cpuPerPacket} in nanoseconds, NaN when not measured;
     * {@code warmupSeconds} how long traffic ran before the measured window.
     */
    public record Run(double mpps, long frontendPackets, long backendPackets, double allocPerPacket, double cpuPerPacket,
                      double busyPerPacket, double frontendBusy, double warmupSeconds, String error) {}

    private NetBench(Options options, PrintStream out) throws IOException {
        super("net", options, out);
    }

    /** Runs the whole matrix, prints the table, writes the results; returns the report. */
    public static Report run(Options options, PrintStream out) throws Exception {
        return new NetBench(options, out).runAll();
    }

    /** Fails with what is missing unless testpmd and hugepages are there. */
    public static List<String> missing() {
        List<String> missing = new ArrayList<>();
        if (!Files.isExecutable(Path.of(TESTPMD))) {
            missing.add("dpdk-testpmd (apt-get install dpdk dpdk-dev)");
        }
        missing.addAll(missingHugepages());
        if (!Files.isExecutable(Path.of("/usr/bin/taskset"))) {
            missing.add("taskset (apt-get install util-linux)");
        }
        return missing;
    }

    private Report runAll() throws Exception {
        List<String> missing = missing();
        if (!missing.isEmpty()) {
            throw new IllegalStateException("bench net needs: " + String.join(", ", missing));
        }
        Report report = report("net", "dpdk-testpmd net_virtio_user on CPU " + options.frontendCpu, "dir", "frame", "mrg",
                "ring", "qp", "backend", "Mpps", "Gbit/s", "min", "max", "spread%", "runs", "vs_dpdk", "cpu_ns/pkt", "cpu_vs_dpdk",
                "busy_ns/pkt", "busy_vs_dpdk", "fe_busy%", "alloc_B/pkt", "fe_pkts", "be_pkts", "errors");
        report.meta("gbit_definition", "Mpps x frame bytes x 8 (L2 frame without CRC, preamble or gap)");
        report.meta("cpu_definition", "backend CPU time / wall time over the measured window (cores busy) x 1000 / the run's"
                + " Mpps; jvhost: its poller threads, DPDK: the whole testpmd process");
        report.meta("busy_definition", "time in polls that moved packets / packets: jvhost its pollers' busy time over the"
                + " measured window, DPDK testpmd --record-core-cycles over its run (none for txonly, which counts every"
                + " poll); fe_busy%: the frontend's busy cycles per packet x the run's rate (none for g2h: txonly)");
        report.meta("dpdk_memory", String.join(" ", DPDK_HUGEPAGES) + " --total-num-mbufs=" + DPDK_MBUFS
                + "; dpdk-nohuge: " + String.join(" ", DPDK_NO_HUGEPAGES) + " --total-num-mbufs=" + DPDK_NO_HUGEPAGES_MBUFS);
        try (ControlLoop loop = new ControlLoop()) {
            for (String ring : options.rings) {
                packed = ring.equals("packed");
                for (String dir : options.directions) {
                    for (int size : options.sizes) {
                        for (int mrg : options.mergeable) {
                            for (int qp : options.queues) {
                                runConfig(loop, report, dir, size, mrg == 1, qp);
                            }
                        }
                    }
                }
            }
        }
        return finish(report);
    }

    /** Whether the configuration running asks the frontend for packed rings. */
    private boolean packed;

    private void runConfig(ControlLoop loop, Report report, String dir, int size, boolean mrg, int qp) throws Exception {
        List<String> backends = options.backends;
        List<List<Run>> runs = Rounds.alternate(backends.size(), options.runs, (b, r) -> {
            String placed = placement.sample();
            Run run = runOnce(loop, backends.get(b), dir, size, mrg, qp);
            placed += placement.after();
            out.printf("  %-4s %4d B mrg=%d %s qp=%d %-15s run %d (%s): %s%n", dir, size, mrg ? 1 : 0, packed ? "packed" : "split",
                    qp, backends.get(b), r + 1, placed,
                    run.error != null ? "FAILED " + run.error
                            : String.format("%.3f Mpps (warmed %.1f s, frontend %d pkts, backend %d pkts, %.1f cpu ns/pkt,"
                                    + " %.1f busy ns/pkt, frontend %.0f %% busy%s)", run.mpps,
                            run.warmupSeconds, run.frontendPackets, run.backendPackets, run.cpuPerPacket, run.busyPerPacket,
                            run.frontendBusy,
                            Double.isNaN(run.allocPerPacket) ? "" : String.format(", %.2f B/pkt on pollers", run.allocPerPacket)));
            return run;
        });
        int dpdkIndex = backends.indexOf("dpdk");
        double[] dpdk = dpdkIndex < 0 ? new double[0] : runs.get(dpdkIndex).stream().mapToDouble(Run::mpps).toArray();
        double[] dpdkCpu = dpdkIndex < 0 ? new double[0] : runs.get(dpdkIndex).stream().mapToDouble(Run::cpuPerPacket).toArray();
        double[] dpdkBusy = dpdkIndex < 0 ? new double[0] : runs.get(dpdkIndex).stream().mapToDouble(Run::busyPerPacket).toArray();
        for (int b = 0; b < backends.size(); b++) {
            List<Run> rs = runs.get(b);
            double[] mpps = rs.stream().mapToDouble(Run::mpps).toArray();
            double[] cpu = rs.stream().mapToDouble(Run::cpuPerPacket).toArray();
            double[] busy = rs.stream().mapToDouble(Run::busyPerPacket).toArray();
            double med = Report.median(mpps), min = Report.min(mpps), max = Report.max(mpps);
            double alloc = Report.median(rs.stream().mapToDouble(Run::allocPerPacket).toArray());
            long errors = rs.stream().filter(x -> x.error != null).count();
            boolean reference = b == dpdkIndex || dpdkIndex < 0;
            report.add(dir, size, mrg ? 1 : 0, packed ? "packed" : "split", qp, backends.get(b), med, med * size * 8 / 1000, min, max,
                    (max - min) / med * 100, rs.size(), reference ? Double.NaN : Report.pairedRatio(mpps, dpdk),
                    Report.median(cpu), reference ? Double.NaN : Report.pairedRatio(cpu, dpdkCpu), Report.median(busy),
                    reference ? Double.NaN : Report.pairedRatio(busy, dpdkBusy),
                    Report.median(rs.stream().mapToDouble(Run::frontendBusy).toArray()), alloc,
                    rs.stream().mapToLong(Run::frontendPackets).sum(), rs.stream().mapToLong(Run::backendPackets).sum(),
                    errors);
        }
    }

    private Run runOnce(ControlLoop loop, String backend, String dir, int size, boolean mrg, int qp) throws Exception {
        int n = nextRun();
        Path socket = work.resolve("vhost-" + n + ".sock");
        Path feLog = work.resolve("run" + n + "-" + backend + "-frontend.log");
        return backend.startsWith("dpdk") ? runDpdk(socket, feLog, n, dir, size, mrg, qp, !backend.equals("dpdk-nohuge"))
                : runJvhost(loop, backend.equals("jvhost-busy") ? IdleMode.BUSY
                        : backend.equals("jvhost-adaptive") ? IdleMode.ADAPTIVE : IdleMode.EVENT, socket, feLog, n, dir,
                size, mrg, qp);
    }

    private Run runJvhost(ControlLoop loop, IdleMode mode, Path socket, Path feLog, int n, String dir, int size,
                          boolean mrg, int qp) throws Exception {
        NetPort port = switch (dir) {
            case "g2h" -> new BenchPorts.Drop();
            case "h2g" -> new BenchPorts.Generate(size);
            case "loop" -> new BenchPorts.Reflect();
            default -> throw new IllegalArgumentException("direction " + dir);
        };
        NetDevice device = new NetDevice(port, qp, GUEST_MAC, 1500);
        int[][] oneSet = onePoller(2 * qp);
        String name = "nb" + n;
        String portOption = switch (dir) {
            case "g2h" -> "--drop";
            case "h2g" -> "--generate " + size;
            default -> "--reflect";
        };
        procs.note("# run " + n + ", in this JVM, equivalent to: taskset -c " + options.backendCpu + " ./jvhost net "
                + portOption + " --socket " + socket + " --queues " + qp + (mode == IdleMode.BUSY ? " --busy-poll" : "")
                + (qp > 1 ? " --queue-map " + queueMap(oneSet) : ""));
        try (Backend backend = new Backend(name, device, new BackendOptions(mode, oneSet), loop)) {
            backend.start();
            try (VhostUserServer server = VhostUserServer.listen(socket, backend, loop)) {
                // The poller names itself once it runs: wait for that, or it would stay unpinned.
                if (procs.awaitAndPinThreads(name + "-poller-", options.backendCpu, 5_000) == 0) {
                    throw new IOException("the poller thread " + name + "-poller-0 did not appear");
                }
                Process fe = procs.start(frontendCommand(socket, n, dir, size, mrg, qp), feLog);
                long frontendPackets = 0;
                Window w = Window.NONE;
                String error = null;
                Warmed warmed = Warmed.NONE;
                try {
                    if (!awaitTraffic(fe, feLog, dir)) {
                        error = "no traffic: " + Procs.tail(feLog, 600).replace('\n', ' ');
                    } else {
                        warmed = warmUp(feLog, dir);
                        w = measure(CpuTime.threads(name + "-poller-"), name + "-poller-", () -> frames(device),
                                () -> busyNanos(backend), () -> sum(device, dir.equals("h2g")));
                    }
                } finally {
                    Procs.stop(fe, 20);
                    removeHugepageFiles(filePrefix("fe", n));
                }
                String log = Files.readString(feLog, StandardCharsets.UTF_8);
                frontendPackets = frontendTotal(log, dir);
                double mpps = error != null ? Double.NaN : samplesMpps(log, dir, warmed.samplesBefore);
                long backendPackets = dir.equals("h2g") ? sum(device, true) : sum(device, false);
                return new Run(mpps, frontendPackets, backendPackets, w.allocPerFrame, CpuTime.perPacket(w.cores, mpps),
                        w.busyPerPacket, frontendBusy(log, dir, mpps), warmed.seconds, error);
            }
        }
    }

    private Run runDpdk(Path socket, Path feLog, int n, String dir, int size, boolean mrg, int qp, boolean hugepages)
            throws Exception {
        Path beLog = work.resolve("run" + n + "-dpdk-backend.log");
        String mode = switch (dir) {
            case "g2h" -> "rxonly";
            case "h2g" -> "txonly";
            default -> "macswap";
        };
        int cpu = options.backendCpu;
        // One main lcore (statistics, mostly asleep) and one forwarding lcore, both on the backend CPU.
        List<String> cmd = new ArrayList<>(List.of("taskset", "-c", Integer.toString(cpu), TESTPMD,
                "--lcores=0@" + cpu + ",1@" + cpu, "--no-pci"));
        cmd.addAll(hugepages ? DPDK_HUGEPAGES : DPDK_NO_HUGEPAGES);
        cmd.addAll(List.of("--file-prefix=" + filePrefix("be", n), "--log-level=5",
                "--vdev=net_vhost0,iface=" + socket + ",queues=" + qp, "--", "--forward-mode=" + mode,
                "--txpkts=" + size, "--auto-start", "--nb-cores=1", "--rxq=" + qp, "--txq=" + qp,
                "--total-num-mbufs=" + (hugepages ? DPDK_MBUFS : DPDK_NO_HUGEPAGES_MBUFS), "--stats-period=1",
                "--disable-link-check", "--record-core-cycles"));
        Process be = procs.start(cmd, beLog);
        try {
            if (!Procs.awaitFile(socket, be, 20_000)) {
                return new Run(Double.NaN, 0, 0, Double.NaN, Double.NaN, Double.NaN, Double.NaN, Double.NaN,
                        "DPDK backend did not listen: "
                        + Procs.tail(beLog, 600).replace('\n', ' '));
            }
            Process fe = procs.start(frontendCommand(socket, n, dir, size, mrg, qp), feLog);
            String error = null;
            Window w = Window.NONE;
            Warmed warmed = Warmed.NONE;
            try {
                if (!awaitTraffic(fe, feLog, dir)) {
                    error = "no traffic: " + Procs.tail(feLog, 600).replace('\n', ' ');
                } else {
                    warmed = warmUp(feLog, dir);
                    w = measure(CpuTime.process(be.pid()), null, null, null, null);
                }
            } finally {
                Procs.stop(fe, 20);
            }
            Procs.stop(be, 20);
            String log = Files.readString(feLog, StandardCharsets.UTF_8);
            String bl = Files.readString(beLog, StandardCharsets.UTF_8);
            Matcher m = TOTALS.matcher(bl);
            long backendPackets = !m.find() ? 0 : Long.parseLong(m.group(dir.equals("h2g") ? 2 : 1));
            double mpps = error != null ? Double.NaN : samplesMpps(log, dir, warmed.samplesBefore);
            return new Run(mpps, frontendTotal(log, dir), backendPackets, Double.NaN, CpuTime.perPacket(w.cores, mpps),
                    mode.equals("txonly") ? Double.NaN : busyNanosPerPacket(bl), frontendBusy(log, dir, mpps), warmed.seconds,
                    error);
        } finally {
            Procs.stop(be, 20);
            removeHugepageFiles(filePrefix("fe", n));
            removeHugepageFiles(filePrefix("be", n));
        }
    }

    /** testpmd's {@code --file-prefix} for run {@code n}'s frontend ({@code fe}) or DPDK backend ({@code be}). */
    private static String filePrefix(String side, int n) {
        return "jvhost-bench-" + side + "-" + ProcessHandle.current().pid() + "-" + n;
    }

    /**
     * Deletes the hugepage files testpmd with {@code prefix} left in /dev/hugepages ({@code PREFIXmap_N}):
     * testpmd does not remove them when it exits, so they would hold their pages (a few hundred MB
     * per run on a machine other people's DPDK tests share) until the next DPDK process clears
     * them. Once the process has ended.
     */
    static void removeHugepageFiles(String prefix) {
        try (var files = Files.list(Path.of("/dev/hugepages"))) {
            for (Path f : (Iterable<Path>) files::iterator) {
                if (f.getFileName().toString().startsWith(prefix + "map_")) {
                    Files.deleteIfExists(f);
                }
            }
        } catch (IOException e) {
            // no hugetlbfs there, or not ours to delete: the next DPDK process clears stale files
        }
    }

    /**
     * What one measured window saw: the cores the backend kept busy, bytes the pollers allocated per
     * frame they moved, and (jvhost) the pollers' busy nanoseconds per packet.
     */
    private record Window(double cores, double allocPerFrame, double busyPerPacket) {
        static final Window NONE = new Window(Double.NaN, Double.NaN, Double.NaN);
    }

    /** How long a run warmed, and how many rate samples the frontend had printed by then (the warm-up's). */
    private record Warmed(double seconds, int samplesBefore) {
        static final Warmed NONE = new Warmed(Double.NaN, 0);
    }

    /**
     * The warm-up once traffic flows: {@code options.warmupSeconds}, then until this JVM's JIT has
     * settled ({@link JitQuiet}: the backend's first run in the JVM otherwise measures its
     * compilation).
     */
    private Warmed warmUp(Path feLog, String dir) throws InterruptedException, IOException {
        long t0 = System.nanoTime();
        Thread.sleep(options.warmupSeconds * 1000L);
        JitQuiet.await();
        return new Warmed((System.nanoTime() - t0) / 1e9, samples(Files.readString(feLog, StandardCharsets.UTF_8), dir).size());
    }

    /**
     * The measured window, {@code options.seconds} long: the CPU time {@code cpu} reads over it per
     * second of wall time, and with {@code pollers} (jvhost) what those threads allocated per frame
     * of {@code frames} (the device's count, both ways) and their {@code busy} nanoseconds per
     * packet of {@code packets} (the measured direction's).
     */
    private Window measure(CpuTime.Meter cpu, String pollers, LongSupplier frames, LongSupplier busy,
                           LongSupplier packets) throws InterruptedException {
        CpuTime.Window cpuWindow = new CpuTime.Window(cpu);
        long frames0 = frames == null ? 0 : frames.getAsLong();
        long busy0 = busy == null ? 0 : busy.getAsLong(), packets0 = packets == null ? 0 : packets.getAsLong();
        PollerAllocation alloc = pollers == null ? null : PollerAllocation.start(pollers);
        long wall0 = System.nanoTime();
        cpuWindow.begin();
        Thread.sleep(options.seconds * 1000L + 300);
        cpuWindow.end();
        long wall = System.nanoTime() - wall0;
        double allocPerFrame = alloc == null ? Double.NaN
                : PollerAllocation.perUnit(alloc.bytesSinceStart(), frames.getAsLong() - frames0);
        long moved = packets == null ? 0 : packets.getAsLong() - packets0;
        double busyPerPacket = moved <= 0 ? Double.NaN : (double) (busy.getAsLong() - busy0) / moved;
        return new Window(CpuTime.cores(cpuWindow.nanos(), wall), allocPerFrame, busyPerPacket);
    }

    private static long busyNanos(Backend backend) {
        return backend.pollerLoads().stream().mapToLong(PollerLoad::busyNanos).sum();
    }

    /** testpmd's busy cycles per packet over its run ({@code --record-core-cycles}) in nanoseconds; NaN if it printed none. */
    static double busyNanosPerPacket(String testpmdLog) {
        Matcher m = CYCLES.matcher(testpmdLog);
        return m.find() ? Double.parseDouble(m.group(1)) * 1000 / Long.parseLong(m.group(2)) : Double.NaN;
    }

    /**
     * The share (%) of the frontend's time in polls that moved packets: its busy ns per packet times
     * the run's rate; NaN for g2h, where its txonly engine counts every poll as busy.
     */
    static double frontendBusy(String frontendLog, String dir, double mpps) {
        return dir.equals("g2h") ? Double.NaN : busyNanosPerPacket(frontendLog) * mpps / 10;
    }

    private List<String> frontendCommand(Path socket, int n, String dir, int size, boolean mrg, int qp) {
        int cpu = options.frontendCpu;
        String mode = switch (dir) {
            case "g2h" -> "txonly";
            case "h2g" -> "rxonly";
            default -> "io";
        };
        List<String> cmd = new ArrayList<>(List.of("taskset", "-c", Integer.toString(cpu), TESTPMD,
                "--lcores=0@" + cpu + ",1@" + cpu, "--no-pci", "--single-file-segments",
                "--file-prefix=" + filePrefix("fe", n), "--log-level=5",
                "--vdev=net_virtio_user0,path=" + socket + ",queues=" + qp + ",mrg_rxbuf=" + (mrg ? 1 : 0) + (packed ? ",packed_vq=1" : ""),
                "--", "--forward-mode=" + mode, "--txpkts=" + size, "--auto-start", "--nb-cores=1", "--rxq=" + qp,
                "--txq=" + qp, "--txd=1024", "--rxd=1024", "--stats-period=1", "--disable-link-check", "--record-core-cycles"));
        if (dir.equals("loop")) {
            cmd.add("--tx-first");
        }
        return cmd;
    }

    /** Waits (up to 20 s) until the frontend's statistics show packets moving in the measured direction. */
    private static boolean awaitTraffic(Process fe, Path log, String dir) throws InterruptedException {
        long deadline = System.currentTimeMillis() + 20_000;
        Pattern p = dir.equals("g2h") ? TX_PPS : RX_PPS;
        while (System.currentTimeMillis() < deadline && fe.isAlive()) {
            try {
                Matcher m = p.matcher(Files.readString(log, StandardCharsets.UTF_8));
                while (m.find()) {
                    if (Long.parseLong(m.group(1)) > 0) {
                        return true;
                    }
                }
            } catch (IOException e) {
                // not written yet
            }
            Thread.sleep(100);
        }
        return false;
    }

    /** The frontend's per-second rate samples in the measured direction, in the order it printed them. */
    static List<Long> samples(String log, String dir) {
        Matcher m = (dir.equals("g2h") ? TX_PPS : RX_PPS).matcher(log);
        List<Long> samples = new ArrayList<>();
        while (m.find()) {
            samples.add(Long.parseLong(m.group(1)));
        }
        return samples;
    }

    /**
     * Median of the per-second samples from the {@code skip}-th on (those printed before the
     * measured window are the warm-up's), and never the first non-zero one (a partial second), in
     * Mpps.
     */
    static double samplesMpps(String log, String dir, int skip) {
        List<Long> samples = samples(log, dir);
        int first = 0;
        while (first < samples.size() && samples.get(first) == 0) {
            first++;
        }
        List<Long> steady = samples.subList(Math.min(samples.size(), Math.max(first + 1, skip)), samples.size());
        // The last sample may be cut short by the stop; keep it only when it is all there is.
        double[] v = (steady.size() > 2 ? steady.subList(0, steady.size() - 1) : steady).stream()
                .mapToDouble(x -> x / 1e6).toArray();
        if (v.length == 0 && first < samples.size()) {
            v = new double[] {samples.get(samples.size() - 1) / 1e6};
        }
        return Report.median(v);
    }

    /** Packets the frontend counted in the measured direction (its totals at exit). */
    static long frontendTotal(String log, String dir) {
        Matcher m = TOTALS.matcher(log);
        if (!m.find()) {
            return 0;
        }
        return Long.parseLong(m.group(dir.equals("g2h") ? 2 : 1));
    }

    private static long frames(NetDevice d) {
        return sum(d, true) + sum(d, false);
    }

    private static long sum(NetDevice d, boolean toGuest) {
        long n = 0;
        for (int i = 0; i < d.nic().pairs(); i++) {
            NetCounters c = d.nic().counters(i);
            n += toGuest ? c.rxFrames : c.txFrames;
        }
        return n;
    }
}
