package io.jvhost.core.metrics;

import java.util.List;

/** One queue's values at a scrape: its counters and gauges, and its latency histogram. */
public record QueueSnapshot(int queue, List<Sample> samples, LatencySnapshot latency) {
    public QueueSnapshot {
        samples = List.copyOf(samples);
    }

    /** The sum of every sample called {@code name} (all labels), 0 if none. */
    public long value(String name) {
        long v = 0;
        for (Sample s : samples) {
            if (s.name().equals(name)) {
                v += s.value();
            }
        }
        return v;
    }

    /** The sample called {@code name} with extra label value {@code labelValue}, 0 if none. */
    public long value(String name, String labelValue) {
        for (Sample s : samples) {
            if (s.name().equals(name) && labelValue.equals(s.labelValue())) {
                return s.value();
            }
        }
        return 0;
    }
}
