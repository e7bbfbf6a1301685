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
    private final List<Poller> pollers = new ArrayList<>();
    private final AtomicLong controlFailures = new AtomicLong();

    /** Creates the pollers (not yet started); {@code control} runs their acknowledgements. */
    public Backend(String name, VirtioDevice device, BackendOptions options, Executor control) throws NativeException {
        this.name = name;
        this.device = device;
        this.control = control;
        int n = device.queueCount();
        this.queues = new VirtQueue[n];
        this.pollerOf = new Poller[n];
        this.handlers = new QueueHandler[n];
        for (int i = 0; i < n; i++) {
            queues[i] = new VirtQueue(i);
            queues[i].coalesce(options.coalesceFrames(), options.coalesceUsecs());
            handlers[i] = device.handler(i);
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

    public int pollerCount() {
        return pollers.size();
    }

    /** Exceptions that escaped the pollers' handlers, commands or duty cycles, over all pollers. Any thread. */
    public long pollerFailures() {
        long n = 0;
        for (Poller p : pollers) {
            n += p.failures();
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
        return true;
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

    @Override
    public void close() {
        pollers.forEach(Poller::close);
    }
}
