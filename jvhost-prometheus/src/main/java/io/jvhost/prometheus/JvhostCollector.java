package io.jvhost.prometheus;

import io.jvhost.core.metrics.DeviceSnapshot;
import io.jvhost.core.metrics.LatencySnapshot;
import io.jvhost.core.metrics.MetricsRegistry;
import io.jvhost.core.metrics.QueueSnapshot;
import io.jvhost.core.metrics.Sample;

import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import io.prometheus.metrics.model.snapshots.Unit;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The Prometheus view of a {@link MetricsRegistry}: at each scrape (and only then) it takes the
 * registry's snapshot and turns it into metric families, labelled {@code device} and {@code queue}
 * (plus a family's own label, e.g. {@code reason}); device-wide values carry {@code device} and
 * {@code type}. Kick-to-used latency is the histogram {@code jvhost_queue_latency_seconds}.
 * Nothing here runs on the data path: the pollers only bump their own counters.
 */
public final class JvhostCollector implements MultiCollector {
    /** The latency histogram's family name (exposed with {@code _bucket}, {@code _sum}, {@code _count}). */
    public static final String LATENCY = "jvhost_queue_latency_seconds";
    private static final String LATENCY_HELP = "Time from the poller seeing work on the queue (a kick, or new"
            + " buffers while busy-polling) to the used-ring publish that answered it.";

    private final MetricsRegistry registry;

    public JvhostCollector(MetricsRegistry registry) {
        this.registry = registry;
    }

    @Override
    public MetricSnapshots collect() {
        Map<String, Family> families = new LinkedHashMap<>();
        HistogramSnapshot.Builder latency = HistogramSnapshot.builder().name(LATENCY).help(LATENCY_HELP).unit(Unit.SECONDS);
        for (DeviceSnapshot d : registry.snapshot()) {
            for (Sample s : d.samples()) {
                families.computeIfAbsent(s.name(), n -> new Family(s)).add(s, "device", d.device(), "type", d.type());
            }
            for (QueueSnapshot q : d.queues()) {
                String queue = Integer.toString(q.queue());
                for (Sample s : q.samples()) {
                    families.computeIfAbsent(s.name(), n -> new Family(s)).add(s, "device", d.device(), "queue", queue);
                }
                latency.dataPoint(histogram(q.latency(), Labels.of("device", d.device(), "queue", queue)));
            }
        }
        List<MetricSnapshot> out = new ArrayList<>(families.size() + 1);
        for (Family f : families.values()) {
            out.add(f.build());
        }
        out.add(latency.build());
        return new MetricSnapshots(out);
    }

    private static HistogramSnapshot.HistogramDataPointSnapshot histogram(LatencySnapshot l, Labels labels) {
        double[] bounds = new double[l.upperBoundsNanos().length + 1];
        for (int i = 0; i < l.upperBoundsNanos().length; i++) {
            bounds[i] = Unit.nanosToSeconds(l.upperBoundsNanos()[i]);
        }
        bounds[bounds.length - 1] = Double.POSITIVE_INFINITY;
        return HistogramSnapshot.HistogramDataPointSnapshot.builder()
                .classicHistogramBuckets(ClassicHistogramBuckets.of(bounds, l.counts()))
                .sum(Unit.nanosToSeconds(l.sumNanos()))
                .labels(labels)
                .build();
    }

    /** One metric family: the first sample's type, help and unit, a data point per sample. */
    private static final class Family {
        private final Sample first;
        private final List<Sample> samples = new ArrayList<>();
        private final List<Labels> labels = new ArrayList<>();

        Family(Sample first) {
            this.first = first;
        }

        void add(Sample s, String k1, String v1, String k2, String v2) {
            if (s.type() != first.type()) {
                throw new IllegalStateException(s.name() + " reported as both " + first.type() + " and " + s.type());
            }
            samples.add(s);
            labels.add(s.label() == null ? Labels.of(k1, v1, k2, v2) : Labels.of(k1, v1, k2, v2, s.label(), s.labelValue()));
        }

        MetricSnapshot build() {
            Unit unit = first.name().endsWith("_bytes") ? Unit.BYTES : first.name().endsWith("_seconds") ? Unit.SECONDS : null;
            if (first.isCounter()) {
                CounterSnapshot.Builder b = CounterSnapshot.builder().name(first.name()).help(first.help());
                if (unit != null) {
                    b.unit(unit);
                }
                for (int i = 0; i < samples.size(); i++) {
                    b.dataPoint(CounterSnapshot.CounterDataPointSnapshot.builder()
                            .value(samples.get(i).exposedValue()).labels(labels.get(i)).build());
                }
                return b.build();
            }
            GaugeSnapshot.Builder b = GaugeSnapshot.builder().name(first.name()).help(first.help());
            if (unit != null) {
                b.unit(unit);
            }
            for (int i = 0; i < samples.size(); i++) {
                b.dataPoint(GaugeSnapshot.GaugeDataPointSnapshot.builder()
                        .value(samples.get(i).exposedValue()).labels(labels.get(i)).build());
            }
            return b.build();
        }
    }
}
