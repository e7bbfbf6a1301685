package io.jvhost.perf;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.BlockStore;
import io.jvhost.blk.FileStore;
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
import java.util.concurrent.atomic.AtomicReference;

import org.HdrHistogram.Histogram;

/**
 * blk: jvhost against qemu-storage-daemon's vhost-user-blk export with the same frontend, the
 * {@link BlkLoad} generator (a Java vhost-user frontend and polling guest driver), in the same run.
 *
 * <p>Targets: {@code jvhost-ram} ({@code ./jvhost blk --ram}), {@code jvhost-file}
 * ({@code ./jvhost blk --file} on the image in /dev/shm, on the default I/O engine: io_uring where
 * the kernel has it), {@code jvhost-file-threads} (the same on {@code --io-engine threads}) and
 * {@code qsd} (qemu-storage-daemon with an iothread, on the same image). The generator thread is pinned to the frontend CPU, jvhost's
 * poller and I/O workers and the whole qemu-storage-daemon to the backend CPU; jvhost serves all
 * queues from one poller, as qemu-storage-daemon serves them from its one iothread. Runs alternate
 * between targets; IOPS is the median over runs, {@code IOPS_vs_qsd} the median of per-round ratios
 * ({@link Report#pairedRatio}), latency percentiles come from all runs' requests.
 */
public final class BlkBench extends Bench<BlkBench.Options> {
    static final String QSD = "/usr/bin/qemu-storage-daemon";

    /** What to run; fields as the CLI fills them. */
    public static final class Options extends BenchOptions {
        public List<String> workloads = List.of("randread-4k", "randwrite-4k", "seqread-128k", "seqwrite-128k");
        public List<Integer> depths = List.of(1, 8, 32);
        /** Queue depth of the sequential workloads. */
        public int sequentialDepth = 8;
        public List<String> targets = List.of("jvhost-ram", "jvhost-file", "qsd");
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
            o.targets = List.of("jvhost-ram", "qsd");
            o.diskBytes = 64L << 20;
            return o;
        }
    }

    /** One run's outcome. */
    public record Run(double iops, Histogram latency, long requests, long errors, double allocPerRequest, String error) {}

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

    private Report runAll() throws Exception {
        List<String> missing = missing();
        if (options.targets.contains("qsd") && !missing.isEmpty()) {
            throw new IllegalStateException("bench blk needs: " + String.join(", ", missing));
        }
        Report report = report("blk", "io.jvhost.perf.BlkLoad (Java vhost-user frontend, polling driver) on CPU "
                + options.frontendCpu, "workload", "qd", "queues", "target", "IOPS", "MB/s", "min_IOPS", "max_IOPS",
                "spread%", "p50_us", "p99_us", "p99.9_us", "runs", "IOPS_vs_qsd", "p99_vs_qsd", "alloc_B/req",
                "requests", "errors");
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
                            : String.format("%.0f IOPS, p99 %.1f us, %d errors%s", run.iops,
                            run.latency.getValueAtPercentile(99) / 1e3, run.errors,
                            Double.isNaN(run.allocPerRequest) ? "" : String.format(", %.2f B/req on pollers and I/O workers", run.allocPerRequest)));
            return run;
        });
        double qsdP99 = Double.NaN;
        int qi = targets.indexOf("qsd");
        double[] qsdIops = qi < 0 ? new double[0] : runs.get(qi).stream().mapToDouble(Run::iops).toArray();
        if (qi >= 0) {
            qsdP99 = merged(runs.get(qi)).getValueAtPercentile(99) / 1e3;
        }
        for (int t = 0; t < targets.size(); t++) {
            List<Run> rs = runs.get(t);
            double[] iops = rs.stream().mapToDouble(Run::iops).toArray();
            double med = Report.median(iops), min = Report.min(iops), max = Report.max(iops);
            Histogram h = merged(rs);
            boolean none = h.getTotalCount() == 0;
            double p50 = none ? Double.NaN : h.getValueAtPercentile(50) / 1e3;
            double p99 = none ? Double.NaN : h.getValueAtPercentile(99) / 1e3;
            double p999 = none ? Double.NaN : h.getValueAtPercentile(99.9) / 1e3;
            boolean isQsd = targets.get(t).equals("qsd");
            report.add(w.name(), w.depth(), queues, targets.get(t), med, med * w.blockSize() / 1e6, min, max,
                    (max - min) / med * 100, p50, p99, p999, rs.size(), isQsd || qi < 0 ? Double.NaN : Report.pairedRatio(iops, qsdIops),
                    isQsd ? Double.NaN : p99 / qsdP99,
                    Report.median(rs.stream().mapToDouble(Run::allocPerRequest).toArray()),
                    rs.stream().mapToLong(Run::requests).sum(), rs.stream().mapToLong(Run::errors).sum()
                            + rs.stream().filter(x -> x.error != null).count());
        }
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
        Duration warmup = Duration.ofSeconds(options.warmupSeconds), measure = Duration.ofSeconds(options.seconds);
        if (target.equals("qsd")) {
            Path log = work.resolve("run" + n + "-qsd.log");
            int cpu = options.backendCpu;
            Process qsd = procs.start(List.of("taskset", "-c", Integer.toString(cpu), QSD,
                    "--object", "iothread,id=iot0",
                    "--blockdev", "driver=file,filename=" + image + ",node-name=n0,cache.direct=off",
                    "--export", "type=vhost-user-blk,id=e0,node-name=n0,iothread=iot0,addr.type=unix,addr.path=" + socket
                            + ",writable=on,num-queues=" + queues), log);
            try {
                if (!Procs.awaitFile(socket, qsd, 20_000)) {
                    return failed("qemu-storage-daemon did not listen: " + Procs.tail(log, 600).replace('\n', ' '));
                }
                procs.note("# run " + n + ": BlkLoad " + w + " on " + queues + " queue(s) against " + socket);
                try (BlkLoad load = BlkLoad.connect(socket, queues, ram, options.diskBytes)) {
                    BlkLoad.Result r = load.run(w, warmup, measure, 1000 + rep);
                    return new Run(r.iops(), r.latencyNanos(), r.requests(), r.errors(), Double.NaN, null);
                } catch (IOException e) {
                    return failed(e + " " + Procs.tail(log, 400).replace('\n', ' '));
                }
            } finally {
                Procs.stop(qsd, 10);
            }
        }
        boolean file = target.startsWith("jvhost-file");
        FileStore.IoEngine engine = target.equals("jvhost-file-threads") ? FileStore.IoEngine.THREADS : FileStore.IoEngine.AUTO;
        BlockStore store = file ? new FileStore(image, false, false, 2, engine) : new RamStore(options.diskBytes);
        String name = "bb" + n;
        IdleMode mode = options.busyPoll ? IdleMode.BUSY : IdleMode.EVENT;
        int[][] oneSet = onePoller(queues);
        procs.note("# run " + n + ", in this JVM, equivalent to: taskset -c " + options.backendCpu + " ./jvhost blk "
                + (file ? "--file " + image + " --io-engine " + (((FileStore) store).engine() == FileStore.IoEngine.URING ? "uring" : "threads --io-workers 2")
                        : "--ram " + options.diskBytes) + " --socket " + socket
                + " --queues " + queues + (queues > 1 ? " --queue-map " + queueMap(oneSet) : "")
                + (options.busyPoll ? " --busy-poll" : ""));
        try (store; Backend backend = new Backend(name, new BlkDevice(store, queues), new BackendOptions(mode, oneSet), loop)) {
            backend.start();
            try (VhostUserServer server = VhostUserServer.listen(socket, backend, loop)) {
                procs.pinThreads(name + "-poller-", options.backendCpu);
                if (file) {
                    procs.pinThreads("-io-", options.backendCpu);
                }
                procs.note("# run " + n + ": BlkLoad " + w + " on " + queues + " queue(s) against " + socket);
                try (BlkLoad load = BlkLoad.connect(socket, queues, ram, options.diskBytes)) {
                    BlkLoad.Result r = load.run(w, warmup, measure, 1000 + rep, name + "-poller-", "-io-");
                    return new Run(r.iops(), r.latencyNanos(), r.requests(), r.errors(), r.allocPerRequest(), null);
                } catch (IOException e) {
                    return failed(e.toString());
                }
            }
        }
    }

    private static Run failed(String why) {
        return new Run(Double.NaN, null, 0, 0, Double.NaN, why);
    }
}
