package io.jvhost.core.metrics;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The devices a process reports, added and removed at any time (a device that stops is removed and
 * its series end). What an exporter (the Prometheus binding, or anything else) reads at each scrape:
 * {@link #snapshot()} calls every source's {@link MetricsSource#metrics()} then and there, so nothing
 * is pushed from the data path. Thread-safe.
 */
public final class MetricsRegistry {
    private final List<MetricsSource> sources = new CopyOnWriteArrayList<>();

    /** Adds a device; closing the returned handle removes it. */
    public AutoCloseable register(MetricsSource source) {
        sources.add(source);
        return () -> sources.remove(source);
    }

    /** Every registered device's values now, in registration order. */
    public List<DeviceSnapshot> snapshot() {
        List<DeviceSnapshot> out = new ArrayList<>(sources.size());
        for (MetricsSource s : sources) {
            out.add(s.metrics());
        }
        return out;
    }
}
