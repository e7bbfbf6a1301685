package io.jvhost.cli.serve;

import io.jvhost.cli.DeviceCommand;
import io.jvhost.cli.DeviceSet;
import io.jvhost.cli.Errors;
import io.jvhost.cli.ServeOptions;
import io.jvhost.core.metrics.DeviceSnapshot;
import io.jvhost.core.metrics.MetricSink;
import io.jvhost.core.metrics.MetricsRegistry;
import io.jvhost.core.metrics.MetricsSource;
import io.jvhost.core.metrics.QueueSnapshot;
import io.jvhost.core.metrics.Sample;
import io.jvhost.core.metrics.Samples;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.runtime.Poller;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.Handover;
import io.jvhost.core.transport.HandoverOffer;
import io.jvhost.core.transport.HandoverTakeover;
import io.jvhost.net.L2Switch;

import java.io.IOException;
import java.nio.file.Path;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The devices of one {@code jvhost serve} process, on one control loop: added (from the config or
 * the control socket), removed, listed, and watched. A device that faults is stopped alone: its
 * frontend broke the protocol, its store failed, one of its queues broke (ring corruption), or an
 * exception escaped its handlers. It is logged in one line, stays in {@link #list()} as failed with
 * the reason, and its metrics stay (frozen, with {@code jvhost_device_failed 1}) until it is removed;
 * the other devices keep serving.
 *
 * <p>Thread-safe: the control socket's threads and the watcher call in; the methods that change
 * the set of devices are synchronized.
 */
final class DeviceHost implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger("jvhost.serve");

    enum State { RUNNING, FAILED }

    /** One config device while it is in the process: running, or failed and stopped. */
    final class Hosted {
        final ServeConfig.DeviceSpec spec;
        final List<Source> sources = new ArrayList<>();
        final List<AutoCloseable> metricHandles = new ArrayList<>();
        DeviceSet set;
        ServeOptions.Started started;
        volatile State state = State.RUNNING;
        volatile String reason;

        Hosted(ServeConfig.DeviceSpec spec) {
            this.spec = spec;
        }

        /** Why this device should be stopped now, or null while it is healthy. Watcher thread. */
        String fault() {
            for (Source s : sources) {
                Backend b = s.backend;
                if (b.frontendFaults() > 0) {
                    return s.id + ": its frontend broke the vhost-user protocol (" + b.lastFrontendFault() + ")";
                }
                if (b.pollerFailures() > 0) {
                    return s.id + ": an exception escaped its queue handlers (" + b.pollerFailures() + ")";
                }
                if (b.controlFailures() > 0) {
                    return s.id + ": handling a vhost-user message failed unexpectedly (" + b.controlFailures() + ")";
                }
                for (int q = 0; q < b.queueCount(); q++) {
                    if (b.queue(q).isBroken()) {
                        return s.id + ": queue " + q + " broke (ring corruption; latched NEEDS_RESET)";
                    }
                }
                for (QueueSnapshot q : b.metrics().queues()) {
                    long io = q.value(MetricSink.ERRORS, "io_error");
                    if (io > 0) {
                        return s.id + ": its store failed (" + io + " I/O error" + (io == 1 ? "" : "s") + " on queue " + q.queue() + ")";
                    }
                }
            }
            return null;
        }
    }

    /** One backend's metrics, with {@code jvhost_device_failed}; frozen at the failure once its device fails. */
    static final class Source implements MetricsSource {
        final String id;
        final Backend backend;
        private final Hosted owner;
        private volatile DeviceSnapshot frozen;

        Source(String id, Backend backend, Hosted owner) {
            this.id = id;
            this.backend = backend;
            this.owner = owner;
        }

        void freeze() {
            frozen = live();
        }

        private DeviceSnapshot live() {
            return backend.metrics();
        }

        @Override
        public DeviceSnapshot metrics() {
            DeviceSnapshot d = frozen != null ? frozen : live();
            List<Sample> samples = new ArrayList<>(d.samples());
            samples.add(new Sample("jvhost_device_failed", Sample.Type.GAUGE,
                    "1 once serve stopped the device for a fault (frontend, store, queue or handler); see its log line.",
                    null, null, owner.state == State.FAILED ? 1 : 0));
            return new DeviceSnapshot(d.device(), d.type(), samples, d.queues());
        }
    }

    private final ControlLoop loop = new ControlLoop();
    private final MetricsRegistry registry = new MetricsRegistry();
    private final Map<String, L2Switch> switches = new ConcurrentHashMap<>();
    private final Map<String, Hosted> devices = new LinkedHashMap<>();
    private final boolean latency;
    private final Thread watcher;
    private volatile boolean closed;
    /** Whether the process offers a live upgrade: every device keeps its sessions' fds for a successor. */
    private volatile boolean handsOver;

    private final Map<String, Poller> pollers = new LinkedHashMap<>();

    /** Starts the shared pollers of {@code pollerSpecs}; devices are added after. */
    DeviceHost(boolean latency, java.util.Collection<ServeConfig.PollerSpec> pollerSpecs) throws Exception {
        for (ServeConfig.PollerSpec p : pollerSpecs) {
            IdleMode mode = switch (p.idle()) {
                case "busy" -> IdleMode.BUSY;
                case "event" -> IdleMode.EVENT;
                default -> IdleMode.ADAPTIVE;
            };
            Poller poller = new Poller("shared-poller-" + p.name(), mode, ServeConfig.POLLER_SLOTS, p.cpu());
            poller.start();
            pollers.put(p.name(), poller);
            // Its time is no one device's: reported as a device of its own, type poller (as a VXLAN uplink is).
            registry.register(() -> {
                Samples s = new Samples();
                poller.load().report(s, p.name());
                return new DeviceSnapshot(poller.name(), "poller", s.list(), List.of());
            });
        }
        this.latency = latency;
        this.watcher = Thread.ofPlatform().name("jvhost-serve-watch").daemon(true).start(this::watch);
    }

    /** Every device added from now on keeps its sessions' fds for a successor (live upgrade). Before the first add. */
    void handsOver() {
        handsOver = true;
    }

    /** The shared pollers' names. */
    java.util.Set<String> pollerNames() {
        return pollers.keySet();
    }

    MetricsRegistry registry() {
        return registry;
    }

    /**
     * Opens and starts a device; a device whose name is taken is refused. If it cannot be opened or
     * started (a missing image, a socket in use) the reason is thrown (a {@code Failure} or a usage
     * error, one line), and with {@code keepFailed} the device is kept as failed with that reason.
     */
    synchronized Hosted add(ServeConfig.DeviceSpec spec, boolean keepFailed) throws Exception {
        return add(spec, keepFailed, null);
    }

    /** As {@link #add(ServeConfig.DeviceSpec, boolean)}, taking the device over from {@code predecessor} if it serves it. */
    synchronized Hosted add(ServeConfig.DeviceSpec spec, boolean keepFailed, HandoverTakeover predecessor) throws Exception {
        if (devices.containsKey(spec.name())) {
            throw new IllegalArgumentException("a device named " + spec.name() + " exists; remove it first or choose another name");
        }
        Hosted h = new Hosted(spec);
        DeviceCommand command = spec.command();
        try {
            String sw = spec.switchName();
            command.inherit(predecessor);
            if (handsOver) {
                command.serveOptions().keepFdsForHandover();
            }
            h.set = command.open(() -> switches.computeIfAbsent(sw == null ? ServeConfig.DEFAULT_SWITCH : sw, n -> new L2Switch()));
            h.started = command.serveOptions().start(spec.name(), h.set, loop,
                    spec.pollerName() == null ? null : pollers.get(spec.pollerName()), predecessor);
        } catch (Exception e) {
            closeStorage(h);
            h.state = State.FAILED;
            h.reason = Errors.describe(e);
            if (keepFailed) {
                devices.put(spec.name(), h);
                LOG.error("device {} failed to start: {}", spec.name(), h.reason);
            }
            throw e;
        }
        for (int i = 0; i < h.started.backends().size(); i++) {
            Source s = new Source(h.started.ids().get(i), h.started.backends().get(i), h);
            h.sources.add(s);
            h.metricHandles.add(registry.register(s));
        }
        for (io.jvhost.core.metrics.MetricsSource m : h.set.metrics()) { // a VXLAN uplink: its series end with the device
            h.metricHandles.add(registry.register(m));
        }
        devices.put(spec.name(), h);
        return h;
    }

    /**
     * Completes the takeover from {@code predecessor} (if any), then offers every device serving
     * at the time a successor asks, with their TAP and RAM disk fds, on {@code path}; once one has
     * taken over, this process exits 0 at once, touching nothing it handed over.
     */
    HandoverOffer offer(Path path, HandoverTakeover predecessor) throws IOException {
        return ServeOptions.offerHandover(path, predecessor, loop, this::servers, () -> {
            Map<String, List<io.jvhost.core.sys.Fd>> fds = new LinkedHashMap<>();
            for (Hosted h : list()) {
                if (h.started != null) {
                    fds.putAll(h.spec.command().handoverFds().duplicate());
                }
            }
            return fds;
        });
    }

    /** The listening sockets of every device serving now. */
    private List<io.jvhost.core.transport.VhostUserServer> servers() {
        List<io.jvhost.core.transport.VhostUserServer> servers = new ArrayList<>();
        for (Hosted h : list()) {
            ServeOptions.Started s = h.started;
            if (s != null) {
                for (io.jvhost.core.transport.Endpoint e : s.endpoints()) {
                    if (e instanceof io.jvhost.core.transport.VhostUserServer v) {
                        servers.add(v);
                    }
                }
            }
        }
        return servers;
    }

    /** Stops and forgets a device; false if there is none of that name. */
    boolean remove(String name) {
        Hosted h;
        synchronized (this) {
            h = devices.remove(name);
        }
        if (h == null) {
            return false;
        }
        stop(h);
        for (AutoCloseable handle : h.metricHandles) {
            try {
                handle.close();
            } catch (Exception e) {
                LOG.warn("{}: {}", name, e.toString());
            }
        }
        LOG.info("device {} removed", name);
        return true;
    }

    synchronized List<Hosted> list() {
        return new ArrayList<>(devices.values());
    }

    synchronized Hosted get(String name) {
        return devices.get(name);
    }

    /**
     * Its endpoints and backends, then its storage: what stopping one device takes. Idempotent:
     * false if it was stopped already (removed meanwhile, or failed).
     */
    private boolean stop(Hosted h) {
        ServeOptions.Started started;
        synchronized (h) {
            started = h.started;
            h.started = null;
        }
        if (started != null) {
            started.close();
        }
        closeStorage(h);
        return started != null;
    }

    private static void closeStorage(Hosted h) {
        AutoCloseable storage;
        synchronized (h) {
            storage = h.set == null ? null : h.set.storage();
            if (h.set != null) {
                h.set = new DeviceSet(h.set.devices(), null, h.set.status(), h.set.watch(), h.set.metrics());
            }
        }
        if (storage != null) {
            try {
                storage.close();
            } catch (Exception e) {
                LOG.warn("{}: closing its storage: {}", h.spec.name(), Errors.describe(e));
            }
        }
    }

    /** Stops a faulty device alone, and says so in one line. Watcher thread. */
    private void fail(Hosted h, String reason) {
        h.sources.forEach(Source::freeze);
        if (!stop(h)) {
            return; // removed while the watcher looked at it
        }
        h.reason = reason;
        h.state = State.FAILED; // once stopped: a failed device's socket is gone
        LOG.error("device {} failed and is stopped (the other devices keep serving): {}", h.spec.name(), reason);
    }

    /** Every 200 ms: faults; every second: watches (a grown image); every 10 s: status and latency lines. */
    private void watch() {
        long tick = 0;
        while (!closed) {
            try {
                Thread.sleep(200);
            } catch (InterruptedException e) {
                return;
            }
            tick++;
            for (Hosted h : list()) {
                if (h.state != State.RUNNING || h.started == null) {
                    continue;
                }
                try {
                    String fault = h.fault();
                    if (fault != null) {
                        fail(h, fault);
                        continue;
                    }
                    DeviceSet set = h.set;
                    if (tick % 5 == 0 && set != null && set.watch() != null) {
                        set.watch().run();
                    }
                    if (tick % 50 == 0 && set != null) {
                        set.status().run();
                        if (latency) {
                            for (Source s : h.sources) {
                                ServeOptions.printLatency(System.out, s.id, s.backend);
                            }
                        }
                    }
                } catch (RuntimeException e) {
                    LOG.error("watching device {}: {}", h.spec.name(), Errors.describe(e));
                }
            }
        }
    }

    /** Stops every device (the last added first), then the shared pollers and the control loop. */
    @Override
    public void close() {
        closed = true;
        watcher.interrupt();
        List<Hosted> all = list();
        for (int i = all.size() - 1; i >= 0; i--) {
            remove(all.get(i).spec.name());
        }
        pollers.values().forEach(Poller::close);
        loop.close();
    }
}
