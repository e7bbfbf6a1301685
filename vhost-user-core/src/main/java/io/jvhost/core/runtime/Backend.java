package io.jvhost.core.runtime;

import io.jvhost.core.device.DeviceContext;
import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.metrics.DeviceSnapshot;
import io.jvhost.core.metrics.MetricsSource;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.ring.VirtQueue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One device and the poller threads that run its queues. The queue objects and their counters
 * live as long as the backend, across frontend connections; {@link #metrics()} reports them.
 */
public final class Backend implements AutoCloseable, DeviceContext, MetricsSource {
    private final String name;
    private final VirtioDevice device;
    private final Executor control;
    private Runnable configChangeSink;
    private final VirtQueue[] queues;
    private final QueueHandler[] handlers;
    private final Poller[] pollerOf;
    /** Per queue: its slot on its poller (the queue index on an own poller). */
    private final int[] slotOf;
    private final Poller shared;
    private final java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();
    private final List<Poller> pollers = new ArrayList<>();
    private final AtomicLong controlFailures = new AtomicLong();
    private final AtomicLong frontendFaults = new AtomicLong();
    private volatile String lastFrontendFault;
    /** Whether sessions keep the fds of what they map, for a successor (live upgrade); off, they keep mappings only. */
    private volatile boolean keepsFds;

    /** Creates the pollers (not yet started); {@code control} runs their acknowledgements. */
    public Backend(String name, VirtioDevice device, BackendOptions options, Executor control) throws NativeException {
        this.name = name;
        this.device = device;
        this.control = control;
        int n = device.queueCount();
        this.queues = new VirtQueue[n];
        this.pollerOf = new Poller[n];
        this.slotOf = new int[n];
        this.handlers = new QueueHandler[n];
        this.shared = options.shared();
        for (int i = 0; i < n; i++) {
            queues[i] = new VirtQueue(i);
            queues[i].interrupts().coalesce(options.coalesceFrames(), options.coalesceUsecs());
            handlers[i] = device.handler(i);
            slotOf[i] = i;
        }
        if (shared != null) {
            int registered = 0;
            try {
                for (; registered < n; registered++) {
                    slotOf[registered] = shared.register(handlers[registered], control);
                    pollerOf[registered] = shared;
                }
            } catch (IllegalStateException e) {
                for (int i = 0; i < registered; i++) {
                    shared.unregister(slotOf[i]);
                }
                throw new IllegalArgumentException(e.getMessage(), e);
            }
            device.bind(this);
            return;
        }
        int[][] sets = options.queueSets() != null ? options.queueSets() : device.queueSets();
        for (int[] set : sets) {
            Poller p = new Poller(name + "-poller-" + pollers.size(), options.idleMode(), handlers, control,
                    options.pollerCpu(pollers.size()));
            pollers.add(p);
            for (int q : set) {
                if (q < 0 || q >= n || pollerOf[q] != null) {
                    close();
                    throw new IllegalArgumentException("queue map names queue " + q + " twice or out of 0.." + (n - 1));
                }
                pollerOf[q] = p;
            }
        }
        for (int q = 0; q < n; q++) {
            if (pollerOf[q] == null) {
                close();
                throw new IllegalArgumentException("queue map leaves out queue " + q);
            }
        }
        device.bind(this);
    }

    /**
     * Makes the sessions that start from now on keep a duplicate fd of each region they map (guest
     * memory, inflight region, dirty log) as long as they map it, so that a successor process can be
     * given them (live upgrade, {@code transport.Handover}). Before the first frontend connects.
     */
    public void keepFdsForHandover() {
        keepsFds = true;
    }

    /** See {@link #keepFdsForHandover()}. Any thread. */
    public boolean keepsFds() {
        return keepsFds;
    }

    /** Where {@link #configChanged()} goes: the current session's backend channel. Control thread. */
    public void configChangeSink(Runnable sink) {
        this.configChangeSink = sink;
    }

    @Override
    public void configChanged() {
        control.execute(() -> {
            if (configChangeSink != null) {
                configChangeSink.run();
            }
        });
    }

    public void start() {
        pollers.forEach(Poller::start);
    }

    public VirtioDevice device() {
        return device;
    }

    /** The name given at construction: the {@code device} label of its metrics, the prefix of its poller threads. */
    public String name() {
        return name;
    }

    /**
     * Every queue's counters, the device's own per-queue values and the latency histograms, read
     * now without locks (poller-written counters are read opaque). Any thread.
     */
    @Override
    public DeviceSnapshot metrics() {
        return BackendMetrics.snapshot(name, this, handlers);
    }

    public int queueCount() {
        return queues.length;
    }

    public VirtQueue queue(int index) {
        return queues[index];
    }

    public Poller poller(int queueIndex) {
        return pollerOf[queueIndex];
    }

    /** Starts queue {@code i} on its poller with {@code config}; {@code ack} runs on the control thread after. */
    void attach(int i, QueueConfig config, Runnable ack) {
        pollerOf[i].attach(slotOf[i], queues[i], config, ack);
    }

    /** Changes queue {@code i}'s call eventfd on its poller; {@code ack} runs on the control thread after. */
    void setCallFd(int i, int fd, Runnable ack) {
        pollerOf[i].setCallFd(slotOf[i], queues[i], fd, ack);
    }

    /** Stops queue {@code i} on its poller; {@code ack} gets its last avail index (see {@link Poller#detach}). */
    void detach(int i, java.util.function.LongConsumer ack) {
        pollerOf[i].detach(slotOf[i], ack);
    }

    /** Its own pollers, or 1 on a shared poller. */
    public int pollerCount() {
        return shared != null ? 1 : pollers.size();
    }

    /**
     * Where its pollers' time goes ({@link PollerLoad}): its own pollers', or the shared poller's,
     * whose time its other backends' queues share. Any thread.
     */
    public List<PollerLoad> pollerLoads() {
        return shared != null ? List.of(shared.load()) : ownPollerLoads();
    }

    /** Where its own pollers' time goes, in poller order; none on a shared poller. Any thread. */
    List<PollerLoad> ownPollerLoads() {
        return pollers.stream().map(Poller::load).toList();
    }

    /** Exceptions that escaped the pollers' handlers, commands or duty cycles, over all pollers. Any thread. */
    public long pollerFailures() {
        long n = 0;
        for (Poller p : pollers) {
            n += p.failures();
        }
        if (shared != null) { // only this backend's slots: the other backends' failures are theirs
            for (int q = 0; q < slotOf.length; q++) {
                n += shared.failures(slotOf[q]);
            }
        }
        return n;
    }

    /** Whether every poller thread is running (between {@link #start()} and {@link #close()}). Any thread. */
    public boolean pollersAlive() {
        for (Poller p : pollers) {
            if (!p.isAlive()) {
                return false;
            }
        }
        return shared == null || shared.isAlive();
    }

    /**
     * Counts a message whose handling threw something other than a protocol refusal: a bug, which
     * the session survived by refusing the message. Control thread.
     */
    public void controlFailed() {
        controlFailures.incrementAndGet();
    }

    /** How many messages failed with an unexpected exception (see {@link #controlFailed()}). Any thread. */
    public long controlFailures() {
        return controlFailures.get();
    }

    /**
     * Counts a frontend connection ended because the frontend broke the protocol (a malformed
     * header, too many fds, a message refused as fatal), and keeps {@code reason}. Control thread.
     */
    public void frontendFault(String reason) {
        lastFrontendFault = reason;
        frontendFaults.incrementAndGet();
    }

    /** How many connections ended for breaking the protocol (see {@link #frontendFault}). Any thread. */
    public long frontendFaults() {
        return frontendFaults.get();
    }

    /** Why the last such connection ended, or null if none did. Any thread. */
    public String lastFrontendFault() {
        return lastFrontendFault;
    }

    /** Stops its own pollers; on a shared poller, frees its slots there (the poller goes on for the others). */
    @Override
    public void close() {
        if (closed.getAndSet(true)) {
            return; // a slot freed twice could be another backend's by then
        }
        if (shared != null) {
            java.util.concurrent.CompletableFuture<?>[] freed = new java.util.concurrent.CompletableFuture<?>[slotOf.length];
            for (int q = 0; q < slotOf.length; q++) {
                freed[q] = shared.unregister(slotOf[q]);
            }
            try { // a queue still stopping frees its slot when its requests in flight are done
                java.util.concurrent.CompletableFuture.allOf(freed).get(StoppingQueues.STOP_TIMEOUT_NANOS + 5_000_000_000L,
                        java.util.concurrent.TimeUnit.NANOSECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
                org.slf4j.LoggerFactory.getLogger(Backend.class).warn("{}: slots on {} not freed: {}", name, shared.name(), e.toString());
            }
        }
        pollers.forEach(Poller::close);
    }
}
