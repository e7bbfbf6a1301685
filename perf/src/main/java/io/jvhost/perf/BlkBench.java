package io.jvhost.perf;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.BlockStore;
import io.jvhost.blk.FileStore;
import io.jvhost.blk.NullStore;
import io.jvhost.blk.RamStore;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.io.IOException;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;

import org.HdrHistogram.Histogram;

/**
 * blk: jvhost against qemu-storage-daemon's vhost-user-blk export with the same frontend, the
 * {@link BlkLoad} generator (a Java vhost-user frontend and polling guest driver), in the same run.
 *
 * <p>Targets, each compared with its like ({@link #REFERENCE}, the {@code ref} column):
 * {@code jvhost-file} ({@code ./jvhost blk --file} on the image in /dev/shm, on the default I/O
 * engine: io_uring where the kernel has it) and {@code jvhost-file-threads} (the same on
 * {@code --io-engine threads}; only when asked for) with {@code qsd} (qemu-storage-daemon with an
 * iothread, on the same image); {@code jvhost-null}
 * ({@code ./jvhost blk --null}: no data touched) with {@code qsd-null} ({@code null-co}); and
 * {@code jvhost-ram} ({@code ./jvhost blk --ram}, which copies every block) with
 * {@code qsd-null-zeroes} ({@code null-co,read-zeroes=on}, which writes every read buffer). The
 * generator thread is pinned to the frontend CPU, jvhost's poller and I/O workers and the whole
 * qemu-storage-daemon to the backend CPU; jvhost serves all queues from one poller, as
 * qemu-storage-daemon serves them from its one iothread. Runs alternate between targets; IOPS is
 * the median over runs, {@code IOPS_vs_ref} the median of per-round ratios
 * ({@link Report#pairedRatio}), latency percentiles come from all runs' requests.
 *
 * <p>{@code cpu_ns/req}: the backend's CPU time in the measured window divided by the requests
 * completed in it: jvhost's poller and I/O worker threads ({@link CpuTime#threads}), the whole
 * qemu-storage-daemon process ({@link CpuTime#process}); {@code cpu_vs_ref} the median of
 * per-round ratios (lower is cheaper).
 */
public final class BlkBench extends Bench<BlkBench.Options> {
    static final String QSD = "/usr/bin/qemu-storage-daemon";

    /** What to run; fields as the CLI fills them. */
    public static final class Options extends BenchOptions {
        public List<String> workloads = List.of("randread-4k", "randwrite-4k", "seqread-128k", "seqwrite-128k");
        public List<Integer> depths = List.of(1, 8, 32, 128);
        /** Queue depth of the sequential workloads. */
        public int sequentialDepth = 8;
        public List<String> targets = List.of("jvhost-ram", "jvhost-file", "jvhost-null", "qsd", "qsd-null", "qsd-null-zeroes");
        public boolean busyPoll;
        public long diskBytes = 256L << 20;
        public Path imageDir = Path.of("/dev/shm");

        public Options() {
            super(3);
        }

        /** A few seconds in all. */
        public static Options quick() {
            Options o = new Options();
            o.quick(1);
            o.workloads = List.of("randread-4k");
            o.depths = List.of(8);
            o.targets = List.of("jvhost-ram", "jvhost-null", "qsd", "qsd-null", "qsd-null-zeroes");
            o.diskBytes = 64L << 20;
            return o;
        }
    }

    /**
     * Each jvhost target's like among qemu-storage-daemon's: the same image through the kernel,
     * nothing touched, or every read buffer written. A target whose like is not in the run is
     * compared with {@code qsd}, if that is; the {@code ref} column says which.
     */
    static final Map<String, String> REFERENCE = Map.of("jvhost-file", "qsd", "jvhost-file-threads", "qsd",
            "jvhost-null", "qsd-null", "jvhost-ram", "qsd-null-zeroes");

    /** One run's outcome; {@code cpuPerRequest} in nanoseconds, NaN when not measured. */
    public record Run(double iops, Histogram latency, long requests, long errors, double allocPerRequest,
                      double cpuPerRequest, String error) {}

    private final Path image;

    private BlkBench(Options options, PrintStream out) throws IOException {
        super("blk", options, out);
        this.image = Files.createTempDirectory(options.imageDir, "jvhost-bench-").resolve("b.img");
    }

    public static List<String> missing() {
        List<String> missing = new ArrayList<>();
        if (!Files.isExecutable(Path.of(QSD))) {
            missing.add("qemu-storage-daemon (apt-get install qemu-system-common)");
        }
        if (!Files.isExecutable(Path.of("/usr/bin/taskset"))) {
            missing.add("taskset (apt-get install util-linux)");
        }
        return missing;
    }

    /** Runs the whole matrix on a thread pinned to the frontend CPU; prints and writes the table. */
    public static Report run(Options options, PrintStream out) throws Exception {
        BlkBench bench = new BlkBench(options, out);
        AtomicReference<Object> result = new AtomicReference<>();
        Thread t = Thread.ofPlatform().name("blk-load").start(() -> {
            try {
                result.set(bench.runAll());
            } catch (Throwable e) {
                result.set(e);
            }
        });
        t.join();
        if (result.get() instanceof Exception e) {
            throw e;
        }
        if (result.get() instanceof Error e) {
            throw e;
        }
        return (Report) result.get();
    }

    /** Every target this benchmark knows; all but {@code jvhost-file-threads} run by default. */
    public static final List<String> TARGETS = List.of("jvhost-ram", "jvhost-file", "jvhost-file-threads", "jvhost-null",
            "qsd", "qsd-null", "qsd-null-zeroes");

    private Report runAll() throws Exception {
        for (String t : options.targets) {
            if (!TARGETS.contains(t)) {
                throw new IllegalArgumentException("bench blk: no target " + t + "; the targets are " + String.join(", ", TARGETS));
            }
        }
        List<String> missing = missing();
        if (options.targets.stream().anyMatch(t -> t.startsWith("qsd")) && !missing.isEmpty()) {
            throw new IllegalStateException("bench blk needs: " + String.join(", ", missing));
        }
        Report report = report("blk", "io.jvhost.perf.BlkLoad (Java vhost-user frontend, polling driver) on CPU "
                + options.frontendCpu, "workload", "qd", "queues", "target", "IOPS", "MB/s", "min_IOPS", "max_IOPS",
                "spread%", "p50_us", "p99_us", "p99.9_us", "runs", "ref", "IOPS_vs_ref", "p50_vs_ref", "p99_vs_ref",
                "cpu_ns/req", "cpu_vs_ref", "alloc_B/req", "requests", "errors");
        report.meta("cpu_definition", "backend CPU ns in the window / requests completed in it;"
                + " jvhost: its poller and I/O worker threads, qemu-storage-daemon: the whole process");
        report.meta("references", "jvhost-file: qsd (file), jvhost-null: qsd-null (null-co), jvhost-ram: qsd-null-zeroes"
                + " (null-co,read-zeroes=on); qsd when the like is not in the run");
        report.meta("image", image + " (" + (options.diskBytes >> 20) + " MiB, tmpfs)");
        report.meta("jvhost_mode", options.busyPoll ? "busy-poll" : "event");
        try {
            createImage();
            procs.pinThreads("blk-load", options.frontendCpu);
            try (ControlLoop loop = new ControlLoop()) {
                for (String wl : options.workloads) {
                    boolean sequential = wl.startsWith("seq");
                    List<Integer> depths = sequential ? List.of(options.sequentialDepth) : options.depths;
                    for (int qd : depths) {
                        for (int q : options.queues) {
                            runConfig(loop, report, workload(wl, qd), q);
                        }
                    }
                }
            }
        } finally {
            Files.deleteIfExists(image);
            Files.deleteIfExists(image.getParent());
        }
        return finish(report);
    }

    static BlkLoad.Workload workload(String name, int depth) {
        String[] p = name.split("-");
        boolean write = p[0].endsWith("write");
        boolean random = p[0].startsWith("rand");
        int size = Integer.parseInt(p[1].replace("k", "")) * 1024;
        return new BlkLoad.Workload(name, write, size, random, depth);
    }

    private void createImage() throws IOException {
        procs.note("# image: " + options.diskBytes + " bytes of non-zero data in " + image + " (tmpfs)");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            byte[] chunk = new byte[1 << 20];
            for (int i = 0; i < chunk.length; i++) {
                chunk[i] = (byte) (i * 31 + 7);
            }
            for (long at = 0; at < options.diskBytes; at += chunk.length) {
                f.write(chunk, 0, (int) Math.min(chunk.length, options.diskBytes - at));
            }
        }
    }

    private void runConfig(ControlLoop loop, Report report, BlkLoad.Workload w, int queues) throws Exception {
        List<String> targets = options.targets;
        List<List<Run>> runs = Rounds.alternate(targets.size(), options.runs, (t, r) -> {
            Run run = runOnce(loop, targets.get(t), w, queues, r);
            out.printf("  %-13s qd=%-2d q=%d %-11s run %d: %s%n", w.name(), w.depth(), queues, targets.get(t), r + 1,
                    run.error != null ? "FAILED " + run.error
                            : String.format("%.0f IOPS, p99 %.1f us, %.0f cpu ns/req, %d errors%s", run.iops,
                            run.latency.getValueAtPercentile(99) / 1e3, run.cpuPerRequest, run.errors,
                            Double.isNaN(run.allocPerRequest) ? "" : String.format(", %.2f B/req on pollers and I/O workers", run.allocPerRequest)));
            return run;
        });
        for (int t = 0; t < targets.size(); t++) {
            List<Run> rs = runs.get(t);
            double[] iops = rs.stream().mapToDouble(Run::iops).toArray();
            double[] cpu = rs.stream().mapToDouble(Run::cpuPerRequest).toArray();
            double med = Report.median(iops), min = Report.min(iops), max = Report.max(iops);
            Histogram h = merged(rs);
            double p50 = percentileMicros(h, 50), p99 = percentileMicros(h, 99), p999 = percentileMicros(h, 99.9);
            String ref = reference(targets.get(t), targets);
            double iopsVs = Double.NaN, p50Vs = Double.NaN, p99Vs = Double.NaN, cpuVs = Double.NaN;
            if (ref != null) {
                List<Run> refRuns = runs.get(targets.indexOf(ref));
                Histogram refH = merged(refRuns);
                iopsVs = Report.pairedRatio(iops, refRuns.stream().mapToDouble(Run::iops).toArray());
                p50Vs = p50 / percentileMicros(refH, 50);
                p99Vs = p99 / percentileMicros(refH, 99);
                cpuVs = Report.pairedRatio(cpu, refRuns.stream().mapToDouble(Run::cpuPerRequest).toArray());
            }
            report.add(w.name(), w.depth(), queues, targets.get(t), med, med * w.blockSize() / 1e6, min, max,
                    (max - min) / med * 100, p50, p99, p999, rs.size(), ref == null ? "-" : ref, iopsVs, p50Vs, p99Vs,
                    Report.median(cpu), cpuVs, Report.median(rs.stream().mapToDouble(Run::allocPerRequest).toArray()),
                    rs.stream().mapToLong(Run::requests).sum(), rs.stream().mapToLong(Run::errors).sum()
                            + rs.stream().filter(x -> x.error != null).count());
        }
    }

    /**
     * The target {@code target} is compared with among {@code targets}: its like from
     * {@link #REFERENCE} if that runs, else {@code qsd} if that runs; none for qemu-storage-daemon's
     * own targets.
     */
    static String reference(String target, List<String> targets) {
        if (target.startsWith("qsd")) {
            return null;
        }
        String like = REFERENCE.get(target);
        if (like != null && targets.contains(like)) {
            return like;
        }
        return targets.contains("qsd") ? "qsd" : null;
    }

    private static double percentileMicros(Histogram h, double percentile) {
        return h.getTotalCount() == 0 ? Double.NaN : h.getValueAtPercentile(percentile) / 1e3;
    }

    private static Histogram merged(List<Run> runs) {
        Histogram h = new Histogram(60_000_000_000L, 3);
        for (Run r : runs) {
            if (r.latency != null) {
                h.add(r.latency);
            }
        }
        return h;
    }

    private Run runOnce(ControlLoop loop, String target, BlkLoad.Workload w, int queues, int rep) throws Exception {
        int n = nextRun();
        Path socket = work.resolve("blk-" + n + ".sock");
        long ram = (long) queues * w.depth() * (w.blockSize() + 8192) + (8L << 20);
        int queueSize = BlkLoad.queueSizeFor(w.depth());
        Duration warmup = Duration.ofSeconds(options.warmupSeconds), measure = Duration.ofSeconds(options.seconds);
        if (target.startsWith("qsd")) {
            Path log = work.resolve("run" + n + "-" + target + ".log");
            int cpu = options.backendCpu;
            Process qsd = procs.start(List.of("taskset", "-c", Integer.toString(cpu), QSD,
                    "--object", "iothread,id=iot0",
                    "--blockdev", qsdBlockdev(target),
                    "--export", "type=vhost-user-blk,id=e0,node-name=n0,iothread=iot0,addr.type=unix,addr.path=" + socket
                            + ",writable=on,num-queues=" + queues), log);
            try {
                if (!Procs.awaitFile(socket, qsd, 20_000)) {
                    return failed("qemu-storage-daemon did not listen: " + Procs.tail(log, 600).replace('\n', ' '));
                }
                procs.note("# run " + n + ": BlkLoad " + w + " on " + queues + " queue(s) of " + queueSize + " against " + socket);
                try (BlkLoad load = BlkLoad.connect(socket, queues, queueSize, ram, options.diskBytes)) {
                    BlkLoad.Result r = load.run(w, warmup, measure, 1000 + rep, CpuTime.process(qsd.pid()));
                    return new Run(r.iops(), r.latencyNanos(), r.requests(), r.errors(), Double.NaN, r.cpuPerRequest(), null);
                } catch (IOException e) {
                    return failed(e + " " + Procs.tail(log, 400).replace('\n', ' '));
                }
            } finally {
                Procs.stop(qsd, 10);
            }
        }
        boolean file = target.startsWith("jvhost-file");
        BlockStore store = switch (target) {
            case "jvhost-file" -> new FileStore(image, false, false, 2, FileStore.IoEngine.AUTO);
            case "jvhost-file-threads" -> new FileStore(image, false, false, 2, FileStore.IoEngine.THREADS);
            case "jvhost-ram" -> new RamStore(options.diskBytes);
            case "jvhost-null" -> new NullStore(options.diskBytes);
            default -> throw new IllegalArgumentException("target " + target);
        };
        String name = "bb" + n;
        IdleMode mode = options.busyPoll ? IdleMode.BUSY : IdleMode.EVENT;
        int[][] oneSet = onePoller(queues);
        procs.note("# run " + n + ", in this JVM, equivalent to: taskset -c " + options.backendCpu + " ./jvhost blk "
                + switch (target) {
                    case "jvhost-null" -> "--null " + options.diskBytes;
                    case "jvhost-ram" -> "--ram " + options.diskBytes;
                    default -> "--file " + image + " --io-engine "
                            + (((FileStore) store).engine() == FileStore.IoEngine.URING ? "uring" : "threads --io-workers 2");
                } + " --socket " + socket
                + " --queues " + queues + (queues > 1 ? " --queue-map " + queueMap(oneSet) : "")
                + (options.busyPoll ? " --busy-poll" : ""));
        try (store; Backend backend = new Backend(name, new BlkDevice(store, queues), new BackendOptions(mode, oneSet), loop)) {
            backend.start();
            try (VhostUserServer server = VhostUserServer.listen(socket, backend, loop)) {
                procs.pinThreads(name + "-poller-", options.backendCpu);
                if (file) {
                    procs.pinThreads("-io-", options.backendCpu);
                }
                procs.note("# run " + n + ": BlkLoad " + w + " on " + queues + " queue(s) of " + queueSize + " against " + socket);
                try (BlkLoad load = BlkLoad.connect(socket, queues, queueSize, ram, options.diskBytes)) {
                    BlkLoad.Result r = load.run(w, warmup, measure, 1000 + rep, CpuTime.threads(name + "-poller-", "-io-"),
                            name + "-poller-", "-io-");
                    return new Run(r.iops(), r.latencyNanos(), r.requests(), r.errors(), r.allocPerRequest(),
                            r.cpuPerRequest(), null);
                } catch (IOException e) {
                    return failed(e.toString());
                }
            }
        }
    }

    /**
     * qemu-storage-daemon's block node for {@code target}: the image file through the page cache,
     * or {@code null-co} of the disk's size (read-zeroes stated either way, as its default has
     * changed between QEMU versions).
     */
    String qsdBlockdev(String target) {
        return switch (target) {
            case "qsd" -> "driver=file,filename=" + image + ",node-name=n0,cache.direct=off";
            case "qsd-null" -> "driver=null-co,size=" + options.diskBytes + ",read-zeroes=off,node-name=n0";
            case "qsd-null-zeroes" -> "driver=null-co,size=" + options.diskBytes + ",read-zeroes=on,node-name=n0";
            default -> throw new IllegalArgumentException("target " + target);
        };
    }

    private static Run failed(String why) {
        return new Run(Double.NaN, null, 0, 0, Double.NaN, Double.NaN, why);
    }
}
