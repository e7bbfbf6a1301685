package io.jvhost.cli;

import io.jvhost.cli.options.QueueMap;
import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.metrics.MetricsRegistry;
import io.jvhost.core.metrics.QueueLatency;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.Endpoint;
import io.jvhost.core.transport.Handover;
import io.jvhost.core.transport.HandoverOffer;
import io.jvhost.core.transport.HandoverTakeover;
import io.jvhost.core.transport.VhostUserClient;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.prometheus.MetricsServer;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** Options every device command shares, and the code that serves a device until a signal. */
public final class ServeOptions {
    private static volatile boolean serving;

    /** The device command these options belong to, for usage errors. */
    @Spec(Spec.Target.MIXEE)
    CommandSpec command;

    @Mixin
    SocketAccessOptions access;

    @Option(names = "--socket", required = true, paramLabel = "PATH",
            description = "vhost-user Unix socket: created and listened on, or (with --client) connected to.")
    java.util.List<Path> sockets;

    @Option(names = "--client", description = "Connect to a frontend that listens (QEMU server=on) and reconnect when it goes away.")
    boolean client;

    @Option(names = "--busy-poll", description = "Spin on the rings instead of sleeping on kicks (lowest latency, a core per poller); as --idle busy.")
    boolean busyPoll;

    @Option(names = "--idle", paramLabel = "MODE", description = {"What a poller does when its rings are empty: adaptive (default: spin 5 us,"
            + " yield until 100 us, then sleep on kicks; a window that keeps missing the traffic shrinks to nothing), event (sleep on kicks at once: least CPU) or busy (spin: least latency)."})
    String idle;

    @Option(names = "--coalesce-frames", paramLabel = "N", defaultValue = "0",
            description = "Interrupt the guest once per N used entries at most (0, the default: whenever it asks), like ethtool -C rx-frames; with --coalesce-usecs.")
    int coalesceFrames;

    @Option(names = "--coalesce-usecs", paramLabel = "US", defaultValue = "50",
            description = "With --coalesce-frames: hold an interrupt back at most this long (default ${DEFAULT-VALUE}); an idle poller sends it at once.")
    long coalesceUsecs;

    @Option(names = "--poller-cpus", paramLabel = "LIST", split = ",",
            description = "Pin poller i to the i-th CPU of LIST (e.g. 2,3), as DPDK pins lcores; the JVM's other threads (JIT, GC, control) keep off those CPUs.")
    java.util.List<Integer> pollerCpus;

    @Option(names = "--queue-map", paramLabel = "MAP", converter = QueueMap.Converter.class,
            description = "Queues per poller thread, e.g. 0,1:2,3 (colon between pollers). Default: the device's choice.")
    QueueMap queueMap;

    @Option(names = "--latency", description = "Print per-queue kick-to-publish latency and batch-size histograms (always recorded) every 10 s, a line per device and queue.")
    boolean latency;

    @Option(names = "--metrics", paramLabel = "HOST:PORT", converter = MetricsAddress.class,
            description = "Serve Prometheus metrics per device and queue at http://HOST:PORT/metrics (port 0: any free port, printed at start).")
    java.net.InetSocketAddress metrics;

    /** Picocli's view of {@link MetricsServer#parse}: a bad address is a usage error, in one line. */
    static final class MetricsAddress implements picocli.CommandLine.ITypeConverter<java.net.InetSocketAddress> {
        @Override
        public java.net.InetSocketAddress convert(String value) {
            try {
                return MetricsServer.parse(value);
            } catch (IllegalArgumentException e) {
                throw new picocli.CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    @Option(names = "--handover", paramLabel = "PATH",
            description = {"Live upgrade: listen on PATH for a successor. Run the same command again while this one serves and the new process"
                    + " takes over the sockets, frontend connections, guest memory and queues where they stand, without the guest or QEMU noticing;"
                    + " the old one exits 0 (or serves on if the new one fails)."})
    Path handover;

    @Option(names = "--trace", description = "Log every vhost-user message, decoded.")
    void trace(boolean on) {
        if (on) {
            System.setProperty("org.slf4j.simpleLogger.log.io.jvhost.core.protocol", "debug");
        }
    }

    /** What {@code --latency} prints every 10 s for one backend: a line per queue that records. */
    public static void printLatency(PrintStream out, String id, Backend backend) {
        for (int q = 0; q < backend.queueCount(); q++) {
            QueueLatency latency = backend.queue(q).latency();
            if (latency != null) {
                out.println(latencyLine(id, q, latency));
            }
        }
    }

    /**
     * One queue's latency line (its histograms since the last line), named after its device as the
     * startup line names it ({@code blk}, or {@code blk0}, {@code blk1}... with several sockets).
     */
    static String latencyLine(String id, int queue, QueueLatency latency) {
        return id + " queue " + queue + ": " + latency.describe();
    }

    /** Refuses (as a usage error) a {@code --queue-map} that does not give each of the device's queues one poller. */
    private void checkQueueMap(String name, VirtioDevice device) {
        String problem = queueMap == null ? null : queueMap.problem(device.queueCount());
        if (problem != null) {
            throw new ParameterException(command.commandLine(), "--queue-map: " + problem + " (" + name + " has "
                    + device.queueCount() + " queue" + (device.queueCount() == 1 ? "" : "s") + " here)");
        }
    }

    /** How many {@code --socket}s were given. */
    public int socketCount() {
        return sockets.size();
    }

    static boolean keepsRunning() {
        return serving;
    }

    /** The idle mode --idle and --busy-poll ask for (adaptive by default); a usage error for anything else. */
    IdleMode idleMode() {
        return idleMode(idle, busyPoll, () -> command.commandLine()); // no command spec when built in code (tests' backends)
    }

    /** {@code --idle MODE} and {@code --busy-poll} as one mode (adaptive when neither is given), for every command that has them. */
    public static IdleMode idleMode(String idle, boolean busyPoll, java.util.function.Supplier<picocli.CommandLine> command) {
        if (idle == null) {
            return busyPoll ? IdleMode.BUSY : IdleMode.ADAPTIVE;
        }
        IdleMode m = switch (idle) {
            case "adaptive" -> IdleMode.ADAPTIVE;
            case "event" -> IdleMode.EVENT;
            case "busy" -> IdleMode.BUSY;
            default -> throw new ParameterException(command.get(), "--idle " + idle + ": the modes are adaptive, event and busy");
        };
        if (busyPoll && m != IdleMode.BUSY) {
            throw new ParameterException(command.get(), "--busy-poll and --idle " + idle + " contradict each other: give one");
        }
        return m;
    }

    /** The CPUs of --poller-cpus, each one this process may run on; null when not given. */
    int[] pollerCpus() {
        if (pollerCpus == null) {
            return null;
        }
        java.util.BitSet allowed;
        try {
            allowed = io.jvhost.core.sys.CpuAffinity.get(0);
        } catch (io.jvhost.core.sys.NativeException e) {
            throw new Failure("--poller-cpus: cannot read this process's CPUs: " + e.getMessage(), e);
        }
        for (int c : pollerCpus) {
            if (c < 0 || !allowed.get(c)) {
                throw new ParameterException(command.commandLine(), "--poller-cpus: CPU " + c + " is not one this process may run on (" + allowed + ")");
            }
        }
        if (new java.util.HashSet<>(pollerCpus).size() != pollerCpus.size()) {
            throw new ParameterException(command.commandLine(), "--poller-cpus " + pollerCpus + ": each poller needs a CPU of its own");
        }
        return pollerCpus.stream().mapToInt(Integer::intValue).toArray();
    }

    /**
     * Marks the process as serving ({@link Main} leaves the exit to the serving code) and installs
     * the SIGTERM and SIGINT handlers: the first signal counts the returned latch down, a second
     * exits at once. Prints the line that says so, after which a signal is safe to send.
     */
    public static CountDownLatch onSignals() {
        CountDownLatch stop = new CountDownLatch(1);
        serving = true;
        java.util.concurrent.atomic.AtomicInteger signals = new java.util.concurrent.atomic.AtomicInteger();
        sun.misc.SignalHandler onSignal = sig -> {
            if (signals.incrementAndGet() > 1) {
                Runtime.getRuntime().halt(128 + sig.getNumber());
            }
            stop.countDown();
        };
        sun.misc.Signal.handle(new sun.misc.Signal("TERM"), onSignal);
        sun.misc.Signal.handle(new sun.misc.Signal("INT"), onSignal);
        // Only now: whoever waits for this line may signal, and must not meet the JVM's default handler.
        System.out.println("Ctrl-C or SIGTERM stops (a second signal exits at once).");
        return stop;
    }

    /** What systemd's STATUS says once the sockets are ready. */
    public static String readyStatus(int sockets, boolean client) {
        return sockets + (client ? " frontend sockets to connect to" : " sockets listening");
    }

    /** Whether this device connects to its frontend ({@code --client}). */
    public boolean client() {
        return client;
    }

    /** The sockets, in order. */
    public java.util.List<Path> sockets() {
        return java.util.List.copyOf(sockets);
    }

    /** The {@code --socket-mode} given, or null. */
    public Integer socketMode() {
        return access.mode;
    }

    /** Whether {@code --latency} was given. */
    public boolean latency() {
        return latency;
    }

    /** The {@code --metrics} address, or null. */
    public java.net.InetSocketAddress metrics() {
        return metrics;
    }

    /** Refuses call coalescing values out of range (a usage error). */
    private void checkCoalescing() {
        if (coalesceFrames < 0 || coalesceFrames > 65536 || coalesceUsecs < 0 || coalesceUsecs > 1_000_000) {
            throw new ParameterException(command.commandLine(), "--coalesce-frames must be 0..65536 and --coalesce-usecs 0..1000000, got "
                    + coalesceFrames + " and " + coalesceUsecs);
        }
    }

    /** Refuses --handover with --client (the frontend's socket is not ours to hand over) and a path no socket can have. */
    private void checkHandover() {
        if (handover == null) {
            return;
        }
        if (client) {
            throw new ParameterException(command.commandLine(), "--handover works with a socket jvhost listens on, not with --client");
        }
        SocketAccessOptions.checkLengths(command, java.util.List.of(handover));
    }

    /** Set by serve for its devices when the process offers a live upgrade (it has no --handover of their own). */
    private boolean keepFds;

    /** Makes the backends {@link #start} starts keep their sessions' fds for a successor (live upgrade). */
    public void keepFdsForHandover() {
        keepFds = true;
    }

    /** The --handover path, or null. */
    public Path handover() {
        return handover;
    }

    /**
     * With --handover: the process serving these sockets now, contacted and its offer received, or
     * null when none listens on the path (this process then starts afresh). A {@link Failure} when it
     * refuses.
     */
    public HandoverTakeover contactPredecessor() {
        if (handover == null) {
            return null;
        }
        return contactPredecessor(command, handover, sockets);
    }

    /**
     * As {@link #contactPredecessor()} for a whole process serving {@code sockets}: {@code serve
     * --config}, whose {@code command} refuses a path no socket can have.
     */
    public static HandoverTakeover contactPredecessor(CommandSpec command, Path handover, java.util.List<Path> sockets) {
        HandoverTakeover t;
        try {
            t = Handover.contact(handover, sockets);
        } catch (java.io.IOException e) {
            throw new Failure("--handover " + handover + ": " + e.getMessage(), e);
        }
        if (t == null) { // this process will listen there itself
            SocketAccessOptions.checkPaths(command, "--handover", java.util.List.of(handover), false);
        } else {
            System.out.printf("jvhost: taking over from pid %d (--handover %s)%n", t.pid(), handover);
        }
        return t;
    }

    /** Checks the access options and each socket path's length: what {@code serve --check} can check without the machine. */
    public void checkUsage() {
        checkCoalescing();
        checkHandover();
        idleMode();
        access.access(command, client);
        SocketAccessOptions.checkLengths(command, sockets);
    }

    /** Serves {@code device} on the one socket given until SIGTERM or SIGINT; returns the exit code. */
    public int serve(String name, VirtioDevice device) throws Exception {
        return serve(name, DeviceSet.of(device));
    }

    /**
     * The backends and endpoints of one command's devices (one per socket), started.
     *
     * @param ids a name per device: the command's name, or {@code name0}, {@code name1}... with several sockets
     */
    public record Started(java.util.List<String> ids, java.util.List<Backend> backends, java.util.List<Endpoint> endpoints)
            implements AutoCloseable {
        /**
         * Stops each device, the last started first: its socket goes, its session detaches its queues
         * (pollers publish what completed, devices finish what is in flight), then its pollers stop.
         */
        @Override
        public void close() {
            for (int i = backends.size() - 1; i >= 0; i--) {
                if (i < endpoints.size()) {
                    endpoints.get(i).close();
                }
                backends.get(i).close();
            }
        }
    }

    /**
     * Checks the socket paths and access options, then starts a backend per device of {@code set}
     * on {@code loop} and listens (or connects) on its socket; prints a line per socket. If one
     * cannot start, those started are stopped again and the error propagates.
     */
    public Started start(String name, DeviceSet set, ControlLoop loop) throws Exception {
        return start(name, set, loop, null);
    }

    /** As {@link #start(String, DeviceSet, ControlLoop)}, every queue on {@code shared} if it is not null. */
    public Started start(String name, DeviceSet set, ControlLoop loop, io.jvhost.core.runtime.Poller shared) throws Exception {
        return start(name, set, loop, shared, null);
    }

    /**
     * As {@link #start(String, DeviceSet, ControlLoop, io.jvhost.core.runtime.Poller)}; with a
     * {@code predecessor}, each socket is the one it listens on (nothing accepted until the takeover
     * completes) instead of a new one.
     */
    public Started start(String name, DeviceSet set, ControlLoop loop, io.jvhost.core.runtime.Poller shared,
                         HandoverTakeover predecessor) throws Exception {
        if (set.devices().size() != sockets.size()) {
            throw new ParameterException(command.commandLine(), name + " serves one socket; got " + sockets.size());
        }
        checkCoalescing();
        BackendOptions own = new BackendOptions(idleMode(), queueMap == null ? null : queueMap.pollers(), pollerCpus(),
                coalesceFrames, coalesceUsecs);
        BackendOptions options = shared != null ? own.onShared(shared) : own;
        io.jvhost.core.transport.SocketAccess socketAccess = access.access(command, client);
        java.util.List<Path> fresh = sockets.stream().filter(p -> predecessor == null || !predecessor.offers(p)).toList();
        SocketAccessOptions.checkPaths(command, fresh, client);
        Started started = new Started(new java.util.ArrayList<>(), new java.util.ArrayList<>(), new java.util.ArrayList<>());
        try {
            for (int i = 0; i < sockets.size(); i++) {
                Path socket = sockets.get(i);
                String id = sockets.size() == 1 ? name : name + i;
                VirtioDevice device = set.devices().get(i);
                if (shared == null) {
                    checkQueueMap(name, device);
                }
                Backend backend = new Backend(id, device, options, loop);
                if (handover != null || keepFds) {
                    backend.keepFdsForHandover();
                }
                backend.start();
                started.ids().add(id);
                started.backends().add(backend);
                started.endpoints().add(client ? VhostUserClient.connect(socket, backend, loop)
                        : predecessor != null && predecessor.offers(socket) ? adopt(predecessor, socket, backend, loop, socketAccess)
                        : VhostUserServer.listen(socket, backend, loop, socketAccess));
                System.out.printf("jvhost %s: %s %s (%s)%n", id, client ? "connecting to"
                                : predecessor != null && predecessor.offers(socket) ? "taking over" : "listening on", socket,
                        shared != null ? "on shared poller " + shared.name()
                                : backend.pollerCount() + " pollers, " + options.idleMode() + " mode");
            }
        } catch (Exception e) {
            started.close();
            throw e;
        }
        return started;
    }

    /** The predecessor's server on {@code socket}, or a {@link Failure} saying why this command cannot take it over. */
    private VhostUserServer adopt(HandoverTakeover predecessor, Path socket, Backend backend, ControlLoop loop,
                                  io.jvhost.core.transport.SocketAccess access) {
        try {
            return predecessor.server(socket, backend, loop, access);
        } catch (java.io.IOException e) {
            throw new Failure("--handover " + handover + ": cannot take over from pid " + predecessor.pid() + ", it serves on: "
                    + e.getMessage(), e);
        }
    }

    /**
     * Completes the takeover from {@code predecessor} (if any) and offers these devices to a
     * successor on --handover's path; once one has taken over, this process exits 0 at once,
     * touching nothing it handed over (the socket files, the TAP, the image stay the successor's).
     */
    private HandoverOffer offer(Started started, ControlLoop loop, HandoverTakeover predecessor, Handover.DeviceFds deviceFds)
            throws java.io.IOException {
        java.util.List<VhostUserServer> servers = new java.util.ArrayList<>();
        for (Endpoint e : started.endpoints()) {
            servers.add((VhostUserServer) e);
        }
        return offerHandover(handover, predecessor, loop, () -> servers, deviceFds);
    }

    /**
     * Completes the takeover from {@code predecessor} (if any; systemd learns the new MAINPID just
     * before the old process exits), then offers {@code servers} and {@code deviceFds} to a
     * successor on {@code handover}; once one has taken over, this process exits 0 at once,
     * touching nothing it handed over. A {@link Failure} if the takeover fails (the predecessor
     * serves on). What {@code blk|net|rng} and {@code serve} share.
     */
    public static HandoverOffer offerHandover(Path handover, HandoverTakeover predecessor, ControlLoop loop,
                                              java.util.function.Supplier<java.util.List<VhostUserServer>> servers,
                                              Handover.DeviceFds deviceFds) throws java.io.IOException {
        io.jvhost.core.sys.Fd listener = null;
        if (predecessor != null) {
            long predecessorPid = predecessor.pid();
            predecessor.onCommit(() -> SystemdNotify.mainPid(ProcessHandle.current().pid()),
                    () -> SystemdNotify.mainPid(predecessorPid)); // the old main process exits at once after TAKEN
            try {
                listener = predecessor.complete(loop);
            } catch (java.io.IOException e) {
                throw new Failure("--handover " + handover + ": taking over from pid " + predecessorPid + " failed, it serves on: "
                        + e.getMessage(), e);
            }
            System.out.printf("jvhost: took over from pid %d%n", predecessorPid);
        }
        return Handover.offer(handover, listener, servers, loop, deviceFds, () -> {
            System.out.println("jvhost: handed over to a successor (--handover " + handover + "); exiting");
            System.out.flush();
            Runtime.getRuntime().halt(0); // no cleanup: everything open is the successor's now
        });
    }

    /**
     * Serves the devices of {@code set}, the i-th on the i-th socket, until SIGTERM or SIGINT,
     * printing its status every 10 seconds; closes its storage once every queue has stopped and
     * published what it finished (a store flushes its writes there). Returns the exit code: 1 if
     * closing the storage fails.
     */
    public int serve(String name, DeviceSet set) throws Exception {
        return serve(name, set, null, Handover.DeviceFds.NONE);
    }

    /**
     * As {@link #serve(String, DeviceSet)}, taking over from {@code predecessor} if not null, and
     * with --handover offering to a successor the sockets and {@code deviceFds}.
     */
    public int serve(String name, DeviceSet set, HandoverTakeover predecessor, Handover.DeviceFds deviceFds) throws Exception {
        AutoCloseable storage = set.storage();
        Runnable status = set.status();
        ControlLoop loop = new ControlLoop();
        java.util.List<AutoCloseable> resources = new java.util.ArrayList<>();
        Started started;
        try {
            started = start(name, set, loop, null, predecessor);
        } catch (Exception e) {
            if (predecessor != null) {
                predecessor.close();
            }
            if (storage != null) {
                storage.close();
            }
            loop.close();
            throw e;
        }
        resources.add(started);
        if (handover != null) {
            try {
                resources.add(0, offer(started, loop, predecessor, deviceFds));
            } catch (Exception e) {
                started.close();
                if (storage != null) {
                    storage.close();
                }
                loop.close();
                throw e;
            }
        }
        java.util.List<Backend> backends = started.backends();
        java.util.List<String> ids = started.ids();
        if (set.watch() != null) {
            Thread.ofPlatform().daemon(true).name(name + "-watch").start(() -> {
                while (true) {
                    try {
                        Thread.sleep(1000);
                    } catch (InterruptedException e) {
                        return;
                    }
                    set.watch().run();
                }
            });
        }
        if (metrics != null) {
            MetricsRegistry registry = new MetricsRegistry();
            backends.forEach(registry::register);
            set.metrics().forEach(registry::register);
            MetricsServer server = MetricsServer.start(metrics, registry);
            resources.add(0, server);
            System.out.printf("jvhost metrics: %s%n", server.url());
        }
        CountDownLatch stop = onSignals();
        // systemd, too, may send SIGTERM as soon as the unit is READY: tell it only now.
        SystemdNotify.ready(readyStatus(sockets.size(), client));
        while (!stop.await(10, java.util.concurrent.TimeUnit.SECONDS)) {
            status.run();
            if (latency) {
                for (int i = 0; i < backends.size(); i++) {
                    printLatency(System.out, ids.get(i), backends.get(i));
                }
            }
        }
        SystemdNotify.stopping();
        // Stopping each session detaches its queues: pollers publish what completed and devices
        // finish what is in flight (blk waits for its stores) before fds and memory go. Storage
        // goes last, when nothing can write to it any more.
        if (storage != null) {
            resources.add(storage);
        }
        int code = 0;
        for (AutoCloseable r : resources) {
            try {
                r.close();
            } catch (Exception e) {
                System.err.println("closing " + r + ": " + e);
                code = r == storage ? 1 : code;
            }
        }
        loop.close();
        status.run();
        System.exit(code);
        return code;
    }
}
