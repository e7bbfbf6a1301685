package io.jvhost.perf;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.BlockStore;
import io.jvhost.blk.FileStore;
import io.jvhost.blk.NullStore;
import io.jvhost.blk.RamStore;
import io.jvhost.blk.RbdStore;
import io.jvhost.blk.nbd.NbdStore;
import io.jvhost.blk.nbd.NbdUri;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.testkit.DevCeph;
import io.jvhost.testkit.NbdServer;

import java.io.IOException;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;

import org.HdrHistogram.Histogram;

/**
 * blk: jvhost against qemu-storage-daemon's vhost-user-blk export with the same frontend, the
 * {@link BlkLoad} generator (a Java vhost-user frontend and polling guest driver), in the same run.
 *
 * <p>Targets, each compared with its like ({@link #REFERENCE}, the {@code ref} column):
 * {@code jvhost-file} ({@code ./jvhost blk --file} on the image in /dev/shm, on the default I/O
 * engine: inline on a tmpfs without non-blocking I/O, else io_uring where the kernel has it),
 * {@code jvhost-file-uring} (the same on {@code --io-engine uring}; only when asked for) and
 * {@code jvhost-file-threads} (the same on {@code --io-engine threads}; only when asked for) with {@code qsd} (qemu-storage-daemon with an
 * iothread, on the same image); {@code jvhost-null}
 * ({@code ./jvhost blk --null}: no data touched) with {@code qsd-null} ({@code null-co}); and
 * {@code jvhost-ram} ({@code ./jvhost blk --ram}, a fresh RAM disk: a read of a page never written
 * fills the buffer with zeroes, a write copies) with {@code qsd-null-zeroes} ({@code null-co,read-zeroes=on},
 * which writes every read buffer); {@code jvhost-ram-written} (only when asked for: the same RAM disk
 * with every page written before the run, so every read copies from memory) with the same. The
 * io_uring file store's like is {@code qsd-uring} ({@code aio=io_uring}) when it runs. Stores past
 * the machine, each against qemu-storage-daemon's client of the same server, both only when asked
 * for: {@code jvhost-rbd} ({@code --rbd}) with {@code qsd-rbd} ({@code driver=rbd}) on one image of a
 * dev cluster ({@code scripts/dev-ceph.sh}, one monitor and one memstore OSD) that the run starts,
 * fills from the image and stops; {@code jvhost-nbd} ({@code --nbd}) with {@code qsd-nbd}
 * ({@code driver=nbd}) on one {@code qemu-nbd} export of a copy of the image, on a Unix socket.
 * {@code spdk-null}, only when asked for ({@code --spdk}): SPDK's vhost target serving a null bdev
 * ({@link SpdkVhost}), as SPDK users run it (hugepages, one reactor pinned to the backend CPU); it is
 * {@code jvhost-null}'s second like after {@code qsd-null} (the {@code ref2} columns). The
 * cluster and the NBD server run on the backend CPU too: both sides' clients share it with them. The
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
    /** qemu-storage-daemon's rbd driver, a module of Debian's qemu-block-extra. */
    static final Path QEMU_BLOCK_RBD = Path.of("/usr/lib/x86_64-linux-gnu/qemu/block-rbd.so");
    static final String RBD_IMAGE = "bench", NBD_EXPORT = "bench";

    /** What to run; fields as the CLI fills them. */
    public static final class Options extends BenchOptions {
        public List<String> workloads = List.of("randread-4k", "randwrite-4k", "seqread-128k", "seqwrite-128k");
        public List<Integer> depths = List.of(1, 8, 32, 128);
        /** Queue depth of the sequential workloads. */
        public int sequentialDepth = 8;
        public List<String> targets = List.of("jvhost-ram", "jvhost-file", "jvhost-null", "qsd", "qsd-uring", "qsd-null",
                "qsd-null-zeroes");
        /**
         * What jvhost's pollers do when idle: adaptive by default, the CLI's default and the like of
         * qemu-storage-daemon's iothread, which polls up to 32 us before it sleeps (until 2026-12-06: event).
         */
        public IdleMode idle = IdleMode.ADAPTIVE;
        /**
         * The frontend negotiates EVENT_IDX where offered, as SPDK's virtio-blk driver and Linux
         * guests do; off, it relies on VRING_USED_F_NO_NOTIFY alone, which qemu-storage-daemon
         * never sets (it then takes a kick for nearly every batch of requests; see RESULTS.md).
         */
        public boolean eventIdx = true;
        public long diskBytes = 256L << 20;
        public Path imageDir = Path.of("/dev/shm");
        /** SPDK's {@code vhost} target, for {@code spdk-null}; null when not given. */
        public Path spdk;
        /** The frontend's guest RAM on 2 MiB hugepages for every target (always so with {@code spdk-null}). */
        public boolean guestHugepages;

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
     * Each jvhost target's likes among qemu-storage-daemon's, best first: the same image through
     * the kernel (io_uring with io_uring, a thread pool with a thread pool), nothing touched, every
     * read buffer written, the same cluster or NBD server. The first that is in the run is the
     * {@code ref} column; the local targets fall back to {@code qsd}, the remote ones have no other.
     */
    static final Map<String, List<String>> REFERENCE = Map.of(
            "jvhost-file", List.of("qsd-uring", "qsd"),
            "jvhost-file-uring", List.of("qsd-uring", "qsd"),
            "jvhost-file-threads", List.of("qsd"),
            "jvhost-null", List.of("qsd-null", "spdk-null", "qsd"),
            "jvhost-ram", List.of("qsd-null-zeroes", "qsd"),
            "jvhost-ram-written", List.of("qsd-null-zeroes", "qsd"),
            "jvhost-rbd", List.of("qsd-rbd"),
            "jvhost-nbd", List.of("qsd-nbd"));

    /**
     * One run's outcome; {@code cpuPerRequest} in nanoseconds, NaN when not measured;
     * {@code warmupSeconds} how long it warmed (at least the option's, longer while the JIT compiled).
     */
    public record Run(double iops, Histogram latency, long requests, long errors, double allocPerRequest,
                      double cpuPerRequest, double kicksPerRequest, double warmupSeconds, String error) {}

    private final Path image;
    /** The dev cluster and the NBD server, while a run that has RBD or NBD targets lasts. */
    private DevCeph ceph;
    private NbdServer nbd;
    private Path nbdImage;

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

    /** What {@code targets} need beyond {@link #missing()}: Ceph and QEMU's rbd driver, qemu-nbd. */
    public static List<String> missing(List<String> targets) {
        List<String> missing = new ArrayList<>();
        if (targets.stream().anyMatch(t -> t.endsWith("-rbd"))) {
            DevCeph.missingPackages().forEach(p -> missing.add(p + " (apt-get install " + p + ")"));
            if (targets.contains("qsd-rbd") && !Files.exists(QEMU_BLOCK_RBD)) {
                missing.add("QEMU's rbd driver (apt-get install qemu-block-extra)");
            }
        }
        if (targets.stream().anyMatch(t -> t.endsWith("-nbd")) && !Files.isExecutable(Path.of("/usr/bin/qemu-nbd"))) {
            missing.add("qemu-nbd (apt-get install qemu-utils)");
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

    /**
     * Every target this benchmark knows; all but {@code jvhost-ram-written}, {@code jvhost-file-uring},
     * {@code -threads}, the RBD, NBD and SPDK ones run by default.
     */
    public static final List<String> TARGETS = List.of("jvhost-ram", "jvhost-ram-written", "jvhost-file", "jvhost-file-uring", "jvhost-file-threads", "jvhost-null",
            "qsd", "qsd-uring", "qsd-null", "qsd-null-zeroes", "jvhost-rbd", "qsd-rbd", "jvhost-nbd", "qsd-nbd", "spdk-null");

    private Report runAll() throws Exception {
        for (String t : options.targets) {
            if (!TARGETS.contains(t)) {
                throw new IllegalArgumentException("bench blk: no target " + t + "; the targets are " + String.join(", ", TARGETS));
            }
        }
        List<String> missing = new ArrayList<>(options.targets.stream().anyMatch(t -> t.startsWith("qsd")) ? missing() : List.of());
        missing.addAll(missing(options.targets));
        if (options.targets.contains("spdk-null")) {
            missing.addAll(SpdkVhost.missing(options.spdk));
        }
        if (!missing.isEmpty()) {
            throw new IllegalStateException("bench blk needs: " + String.join(", ", missing));
        }
        Report report = report("blk", "io.jvhost.perf.BlkLoad (Java vhost-user frontend, polling driver"
                + (options.eventIdx ? ", EVENT_IDX where offered" : ", no EVENT_IDX") + ") on CPU " + options.frontendCpu, "workload", "qd", "queues", "target", "IOPS", "MB/s", "min_IOPS", "max_IOPS",
                "spread%", "p50_us", "p99_us", "p99.9_us", "runs", "ref", "IOPS_vs_ref", "p50_vs_ref", "p99_vs_ref",
                "cpu_ns/req", "cpu_vs_ref", "ref2", "IOPS_vs_ref2", "cpu_vs_ref2", "kicks/req", "alloc_B/req", "requests", "errors");
        report.meta("cpu_definition", "backend CPU ns in the window / requests completed in it;"
                + " jvhost: its poller and I/O worker threads, qemu-storage-daemon: the whole process");
        report.meta("references", "jvhost-file, jvhost-file-uring: qsd-uring (file, aio=io_uring), jvhost-file-threads: qsd (file, aio=threads),"
                + " jvhost-null: qsd-null (null-co), jvhost-ram (a fresh RAM disk), jvhost-ram-written (every page written first): qsd-null-zeroes"
                + " (null-co,read-zeroes=on); qsd when the like"
                + " is not in the run; jvhost-rbd: qsd-rbd, jvhost-nbd: qsd-nbd (the same cluster, the same server);"
                + " ref2: the next like in the run (jvhost-null: spdk-null, SPDK's vhost target on a null bdev)");
        if (options.targets.contains("spdk-null")) {
            report.meta("spdk", SpdkVhost.binary(options.spdk) + ", one reactor on CPU "
                    + options.backendCpu + ", " + SpdkVhost.HUGEPAGE_MB + " MB of hugepages");
        }
        report.meta("image", image + " (" + (options.diskBytes >> 20) + " MiB, " + Files.getFileStore(image.getParent()).type() + ")");
        report.meta("jvhost_mode", options.idle.name().toLowerCase(java.util.Locale.ROOT));
        report.meta("frontend_event_idx", options.eventIdx ? "negotiated where offered" : "refused");
        report.meta("guest_ram", guestHugepages() ? "memfd on 2 MiB hugepages (for SPDK, every target alike)" : "memfd on 4 KiB pages");
        try {
            createImage();
            if (options.targets.stream().anyMatch(t -> t.endsWith("-rbd"))) {
                startCeph(report);
            }
            if (options.targets.stream().anyMatch(t -> t.endsWith("-nbd"))) {
                startNbd(report);
            }
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
            stopServers();
            Files.deleteIfExists(image);
            Files.deleteIfExists(image.getParent());
        }
        return finish(report);
    }

    /**
     * A dev cluster for this run, on the backend CPU (on one machine the OSD has to share a CPU
     * with someone; the frontend's spins, the backends' clients wait for it), with the image
     * imported as {@code rbd/bench}: reads find data, not holes the OSD answers without looking.
     */
    private void startCeph(Report report) throws IOException, InterruptedException {
        ceph = DevCeph.start(BlkBench.class);
        procs.note("scripts/dev-ceph.sh start " + ceph.dir() + "   # one monitor, one memstore OSD, auth none");
        try (var pids = Files.list(ceph.dir().resolve("run"))) {
            for (Path p : pids.filter(f -> f.toString().endsWith(".pid")).toList()) {
                procs.pinProcess(Long.parseLong(Files.readString(p).trim()), options.backendCpu);
            }
        }
        String name = DevCeph.POOL + "/" + RBD_IMAGE;
        procs.note("rbd -c " + ceph.conf() + " import --no-progress " + image + " " + name);
        ceph.rbd("import", "--no-progress", image.toString(), name);
        report.meta("rbd", name + " on a dev cluster (one monitor, one memstore OSD) pinned to CPU " + options.backendCpu);
    }

    /** qemu-nbd on a copy of the image (qemu-storage-daemon's file targets lock the image itself), on the backend CPU. */
    private void startNbd(Report report) throws IOException, InterruptedException {
        nbdImage = image.resolveSibling("nbd.img");
        Files.copy(image, nbdImage);
        nbd = NbdServer.qemuNbdUnix(nbdImage, work.resolve("nbd.sock"), NBD_EXPORT);
        procs.note(Procs.quote(nbd.command()) + "   # NbdServer, pinned below");
        procs.pinProcess(nbd.pid(), options.backendCpu);
        report.meta("nbd", Procs.quote(nbd.command()) + " pinned to CPU " + options.backendCpu);
    }

    private void stopServers() throws IOException, InterruptedException {
        if (nbd != null) {
            nbd.close();
            nbd = null;
            Files.deleteIfExists(nbdImage);
        }
        if (ceph != null) {
            ceph.close(); // the OSD, then the monitor
            ceph = null;
        }
    }

    private NbdUri nbdUri() {
        return NbdUri.parse("nbd+unix:///" + NBD_EXPORT + "?socket=" + nbd.socket());
    }

    static BlkLoad.Workload workload(String name, int depth) {
        String[] p = name.split("-");
        boolean write = p[0].endsWith("write");
        boolean random = p[0].startsWith("rand");
        int size = Integer.parseInt(p[1].replace("k", "")) * 1024;
        return new BlkLoad.Workload(name, write, size, random, depth);
    }

    private void createImage() throws IOException {
        procs.note("# image: " + options.diskBytes + " bytes of non-zero data in " + image + " ("
                + Files.getFileStore(image.getParent()).type() + ")");
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
            String placed = placement.sample();
            Run run = runOnce(loop, targets.get(t), w, queues, r);
            placed += placement.after();
            out.printf("  %-13s qd=%-2d q=%d %-11s run %d (%s): %s%n", w.name(), w.depth(), queues, targets.get(t), r + 1, placed,
                    run.error != null ? "FAILED " + run.error
                            : String.format("warmed %.1f s, %.0f IOPS, p99 %.1f us, %.0f cpu ns/req, %.3f kicks/req, %d errors%s",
                            run.warmupSeconds, run.iops,
                            run.latency.getValueAtPercentile(99) / 1e3, run.cpuPerRequest, run.kicksPerRequest, run.errors,
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
            List<String> likes = references(targets.get(t), targets);
            String ref = likes.isEmpty() ? null : likes.get(0), ref2 = likes.size() < 2 ? null : likes.get(1);
            double iopsVs = Double.NaN, p50Vs = Double.NaN, p99Vs = Double.NaN, cpuVs = Double.NaN;
            if (ref != null) {
                List<Run> refRuns = runs.get(targets.indexOf(ref));
                Histogram refH = merged(refRuns);
                iopsVs = Report.pairedRatio(iops, refRuns.stream().mapToDouble(Run::iops).toArray());
                p50Vs = p50 / percentileMicros(refH, 50);
                p99Vs = p99 / percentileMicros(refH, 99);
                cpuVs = Report.pairedRatio(cpu, refRuns.stream().mapToDouble(Run::cpuPerRequest).toArray());
            }
            double iopsVs2 = Double.NaN, cpuVs2 = Double.NaN;
            if (ref2 != null) {
                List<Run> refRuns = runs.get(targets.indexOf(ref2));
                iopsVs2 = Report.pairedRatio(iops, refRuns.stream().mapToDouble(Run::iops).toArray());
                cpuVs2 = Report.pairedRatio(cpu, refRuns.stream().mapToDouble(Run::cpuPerRequest).toArray());
            }
            report.add(w.name(), w.depth(), queues, targets.get(t), med, med * w.blockSize() / 1e6, min, max,
                    (max - min) / med * 100, p50, p99, p999, rs.size(), ref == null ? "-" : ref, iopsVs, p50Vs, p99Vs,
                    Report.median(cpu), cpuVs, ref2 == null ? "-" : ref2, iopsVs2, cpuVs2,
                    Report.median(rs.stream().mapToDouble(Run::kicksPerRequest).toArray()),
                    Report.median(rs.stream().mapToDouble(Run::allocPerRequest).toArray()),
                    rs.stream().mapToLong(Run::requests).sum(), rs.stream().mapToLong(Run::errors).sum()
                            + rs.stream().filter(x -> x.error != null).count());
        }
    }

    /**
     * The target {@code target} is compared with among {@code targets}: the first of its likes in
     * {@link #REFERENCE} that runs; none for the references' own targets.
     */
    static String reference(String target, List<String> targets) {
        List<String> likes = references(target, targets);
        return likes.isEmpty() ? null : likes.get(0);
    }

    /** The first two of {@code target}'s likes that are in {@code targets}, best first: the {@code ref} and {@code ref2} columns. */
    static List<String> references(String target, List<String> targets) {
        return REFERENCE.getOrDefault(target, List.of()).stream().filter(targets::contains).limit(2).toList();
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
        if (target.equals("spdk-null")) {
            return runSpdk(w, queues, rep, n, ram, queueSize, warmup, measure);
        }
        if (target.startsWith("qsd")) {
            Path log = work.resolve("run" + n + "-" + target + ".log");
            int cpu = options.backendCpu;
            Process qsd = procs.start(List.of("taskset", "-c", Integer.toString(cpu), QSD,
                    "--object", "iothread,id=iot0",
                    "--blockdev", qsdBlockdev(target),
                    "--export", "type=vhost-user-blk,id=e0,node-name=n0,iothread=iot0,addr.type=unix,addr.path=" + socket
                            + ",writable=on,num-queues=" + queues), log);
            return runProcess("qemu-storage-daemon", qsd, socket, log, 20_000, w, queues, rep, n, ram, queueSize, warmup, measure);
        }
        // Native threads that appear from here on are the backend's, for pinning and CPU time:
        // librbd's, and the io_uring workers (iou-wrk-*) the kernel starts for the file store.
        Set<Long> threadsBefore = Procs.taskIds();
        // Threads are born with their creator's CPUs: this thread moves to the backend CPU while it
        // makes the store and the backend, so that all their threads start there (a kernel io_uring
        // worker cannot be moved later), and back once they are pinned.
        procs.pinThreads("blk-load", options.backendCpu);
        try {
            return runJvhost(loop, target, w, queues, rep, n, socket, ram, queueSize, warmup, measure, threadsBefore);
        } finally {
            procs.pinThreads("blk-load", options.frontendCpu);
        }
    }

    /** SPDK's vhost target on a null bdev of the disk's size, one reactor on the backend CPU, as its users run it. */
    private Run runSpdk(BlkLoad.Workload w, int queues, int rep, int n, long ram, int queueSize, Duration warmup,
                        Duration measure) throws Exception {
        String controller = "spdk-" + n;
        Path socket = work.resolve(controller), log = work.resolve("run" + n + "-spdk-null.log");
        Path config = work.resolve("run" + n + "-spdk.json");
        SpdkVhost.writeNullConfig(config, controller, options.diskBytes, options.backendCpu);
        procs.note("# " + config + ": " + Files.readString(config).replaceAll("\\s+", " "));
        Process spdk = procs.start(SpdkVhost.command(options.spdk, work, config, options.backendCpu), log);
        return runProcess("SPDK's vhost target", spdk, socket, log, 30_000, w, queues, rep, n, ram, queueSize, warmup, measure);
    }

    /**
     * Drives a reference that runs as a process of its own (qemu-storage-daemon, SPDK): waits for
     * its socket, runs the load with the whole process's CPU time as the backend's, stops it.
     */
    private Run runProcess(String what, Process p, Path socket, Path log, long listenMillis, BlkLoad.Workload w, int queues,
                           int rep, int n, long ram, int queueSize, Duration warmup, Duration measure) throws Exception {
        try {
            if (!Procs.awaitFile(socket, p, listenMillis)) {
                return failed(what + " did not listen: " + Procs.tail(log, 600).replace('\n', ' '));
            }
            procs.note("# run " + n + ": BlkLoad " + w + " on " + queues + " queue(s) of " + queueSize + " against " + socket);
            try (BlkLoad load = BlkLoad.connect(socket, queues, queueSize, ram, options.diskBytes, options.eventIdx, guestHugepages())) {
                BlkLoad.Result r = load.run(w, warmup, measure, 1000 + rep, CpuTime.process(p.pid()));
                return new Run(r.iops(), r.latencyNanos(), r.requests(), r.errors(), Double.NaN, r.cpuPerRequest(),
                        r.kicksPerRequest(), r.warmupSeconds(), null);
            } catch (IOException e) {
                return failed(e + " " + Procs.tail(log, 400).replace('\n', ' '));
            }
        } finally {
            Procs.stop(p, 10);
        }
    }

    /** The RAM disk with every page holding data (not zeroes), as after a guest has filled it. */
    private static RamStore written(RamStore ram) {
        ram.contents().fill((byte) 0x5a);
        return ram;
    }

    private Run runJvhost(ControlLoop loop, String target, BlkLoad.Workload w, int queues, int rep, int n, Path socket,
                          long ram, int queueSize, Duration warmup, Duration measure, Set<Long> threadsBefore)
            throws Exception {
        BlockStore store = switch (target) {
            case "jvhost-file" -> new FileStore(image, false, false, 2, FileStore.IoEngine.AUTO);
            case "jvhost-file-uring" -> new FileStore(image, false, false, 2, FileStore.IoEngine.URING);
            case "jvhost-file-threads" -> new FileStore(image, false, false, 2, FileStore.IoEngine.THREADS);
            case "jvhost-ram" -> new RamStore(options.diskBytes);
            case "jvhost-ram-written" -> written(new RamStore(options.diskBytes));
            case "jvhost-null" -> new NullStore(options.diskBytes);
            case "jvhost-rbd" -> RbdStore.open(ceph.conf(), null, DevCeph.POOL, RBD_IMAGE, false, Duration.ofSeconds(30));
            case "jvhost-nbd" -> NbdStore.open(NbdStore.Options.of(nbdUri(), null));
            default -> throw new IllegalArgumentException("target " + target);
        };
        String name = "bb" + n;
        IdleMode mode = options.idle;
        int[][] oneSet = onePoller(queues);
        procs.note("# run " + n + ", in this JVM, equivalent to: taskset -c " + options.backendCpu + " ./jvhost blk "
                + switch (target) {
                    case "jvhost-null" -> "--null " + options.diskBytes;
                    case "jvhost-ram" -> "--ram " + options.diskBytes;
                    case "jvhost-ram-written" -> "--ram " + options.diskBytes + " (every page written before the run)";
                    case "jvhost-rbd" -> "--rbd " + DevCeph.POOL + "/" + RBD_IMAGE + " --ceph-conf " + ceph.conf();
                    case "jvhost-nbd" -> "--nbd '" + nbdUri() + "'";
                    default -> "--file " + image + " --io-engine " + switch (((FileStore) store).engine()) {
                        case URING -> "uring";
                        case INLINE -> "inline";
                        default -> "threads --io-workers 2";
                    };
                } + " --socket " + socket
                + " --queues " + queues + (queues > 1 ? " --queue-map " + queueMap(oneSet) : "")
                + " --idle " + mode.name().toLowerCase(java.util.Locale.ROOT));
        try (store; Backend backend = new Backend(name, new BlkDevice(store, queues), new BackendOptions(mode, oneSet), loop)) {
            backend.start();
            try (VhostUserServer server = VhostUserServer.listen(socket, backend, loop)) {
                // The poller names itself once it runs: wait for that, or it would stay unpinned.
                if (procs.awaitAndPinThreads(name + "-poller-", options.backendCpu, 5_000) == 0) {
                    return failed("the poller thread " + name + "-poller-0 did not appear");
                }
                // The store's threads: the file store's I/O workers, the NBD store's event loop,
                // librbd's native threads; as the whole of qemu-storage-daemon is pinned and measured.
                String storeThreads = target.equals("jvhost-nbd") ? "jvhost-nbd" : "-io-";
                procs.pinThreads(storeThreads, options.backendCpu);
                long[] nativeThreads = CpuTime.nativeThreadsSince(threadsBefore);
                procs.pinTasks(nativeThreads, options.backendCpu);
                if (nativeThreads.length > 0) {
                    procs.note("# run " + n + ": the store's native threads, pinned and measured: " + Procs.comms(nativeThreads));
                }
                procs.pinThreads("blk-load", options.frontendCpu);
                procs.note("# run " + n + ": BlkLoad " + w + " on " + queues + " queue(s) of " + queueSize + " against " + socket);
                try (BlkLoad load = BlkLoad.connect(socket, queues, queueSize, ram, options.diskBytes, options.eventIdx, guestHugepages())) {
                    CpuTime.Meter cpu = CpuTime.sum(CpuTime.threads(name + "-poller-", storeThreads),
                            CpuTime.nativeThreads(threadsBefore));
                    BlkLoad.Result r = load.run(w, warmup, measure, 1000 + rep, cpu, name + "-poller-", storeThreads);
                    return new Run(r.iops(), r.latencyNanos(), r.requests(), r.errors(), r.allocPerRequest(),
                            r.cpuPerRequest(), r.kicksPerRequest(), r.warmupSeconds(), null);
                } catch (IOException e) {
                    return failed(e.toString());
                }
            }
        }
    }

    /**
     * qemu-storage-daemon's block node for {@code target}: the image file through the page cache
     * (on its thread pool, or io_uring), {@code null-co} of the disk's size (read-zeroes stated
     * either way, as its default has changed between QEMU versions), the run's RBD image or NBD
     * export.
     */
    String qsdBlockdev(String target) {
        return switch (target) {
            case "qsd" -> "driver=file,filename=" + image + ",node-name=n0,cache.direct=off";
            case "qsd-uring" -> "driver=file,filename=" + image + ",node-name=n0,cache.direct=off,aio=io_uring";
            case "qsd-rbd" -> "driver=rbd,pool=" + DevCeph.POOL + ",image=" + RBD_IMAGE + ",conf=" + ceph.conf() + ",node-name=n0";
            case "qsd-nbd" -> "driver=nbd,server.type=unix,server.path=" + nbd.socket() + ",export=" + NBD_EXPORT
                    + ",node-name=n0";
            case "qsd-null" -> "driver=null-co,size=" + options.diskBytes + ",read-zeroes=off,node-name=n0";
            case "qsd-null-zeroes" -> "driver=null-co,size=" + options.diskBytes + ",read-zeroes=on,node-name=n0";
            default -> throw new IllegalArgumentException("target " + target);
        };
    }

    /**
     * Whether the frontend puts the guest's RAM on hugepages: when asked, and in a run with SPDK, which refuses
     * memory that is not (its vhost target registers guest RAM in 2 MiB units), for every target
     * alike, so that all see the same frontend.
     */
    private boolean guestHugepages() {
        return options.guestHugepages || options.targets.contains("spdk-null");
    }

    private static Run failed(String why) {
        return new Run(Double.NaN, null, 0, 0, Double.NaN, Double.NaN, Double.NaN, Double.NaN, why);
    }
}
