package io.jvhost.core.metrics;

import java.util.ArrayList;
import java.util.List;

/** A {@link MetricSink} that keeps what it is told, in order, as {@link Sample}s. One thread. */
public final class Samples implements MetricSink {
    private final List<Sample> list = new ArrayList<>();

    @Override
    public void counter(String name, String help, long value) {
        list.add(new Sample(name, Sample.Type.COUNTER, help, null, null, value));
    }

    @Override
    public void counter(String name, String help, String label, String labelValue, long value) {
        list.add(new Sample(name, Sample.Type.COUNTER, help, label, labelValue, value));
    }

    @Override
    public void gauge(String name, String help, long value) {
        list.add(new Sample(name, Sample.Type.GAUGE, help, null, null, value));
    }

    @Override
    public void timeCounter(String name, String help, String label, String labelValue, long nanos) {
        list.add(new Sample(name, Sample.Type.TIME_COUNTER, help, label, labelValue, nanos));
    }

    public List<Sample> list() {
        return list;
    }
}
