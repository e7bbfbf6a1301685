package io.jvhost.core.runtime;

import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.metrics.DeviceSnapshot;
import io.jvhost.core.metrics.LatencySnapshot;
import io.jvhost.core.metrics.MetricSink;
import io.jvhost.core.metrics.QueueLatency;
import io.jvhost.core.metrics.QueueSnapshot;
import io.jvhost.core.metrics.Samples;
import io.jvhost.core.ring.ChainError;
import io.jvhost.core.ring.QueueCounters;
import io.jvhost.core.ring.VirtQueue;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * What the framework reports for every device and queue, read at a scrape from the queues' counters
 * (opaque reads of poller-written longs) and latency recorders; the device's handler adds its own.
 */
final class BackendMetrics {
    private BackendMetrics() {}

    static DeviceSnapshot snapshot(String name, Backend backend, QueueHandler[] handlers) {
        int type = backend.device().deviceType();
        Samples device = new Samples();
        device.gauge("jvhost_device_queues", "Queues the device offers.", backend.queueCount());
        device.counter("jvhost_device_poller_failures", "Exceptions that escaped the device's pollers (each was survived).",
                backend.pollerFailures());
        device.counter("jvhost_device_control_failures", "vhost-user messages whose handling failed unexpectedly (each refused).",
                backend.controlFailures());
        device.counter("jvhost_device_frontend_faults", "Frontend connections ended for breaking the protocol"
                + " (malformed header, too many fds, a message refused as fatal).", backend.frontendFaults());
        List<PollerLoad> loads = backend.ownPollerLoads();
        for (int p = 0; p < loads.size(); p++) {
            loads.get(p).report(device, Integer.toString(p));
        }
        List<QueueSnapshot> queues = new ArrayList<>(backend.queueCount());
        for (int i = 0; i < backend.queueCount(); i++) {
            VirtQueue q = backend.queue(i);
            Samples s = new Samples();
            queue(q, s);
            handlers[i].metrics(s);
            QueueLatency latency = q.latency();
            queues.add(new QueueSnapshot(i, s.list(), latency == null ? LatencySnapshot.EMPTY : latency.snapshot()));
        }
        return new DeviceSnapshot(name, typeName(type), device.list(), queues);
    }

    private static void queue(VirtQueue q, MetricSink s) {
        QueueCounters.Snapshot c = q.counters().snapshot();
        s.counter("jvhost_queue_requests", "Descriptor chains the device took from the queue: blk requests,"
                + " net packets sent or receive buffers filled, rng reads.", c.chains());
        s.counter("jvhost_queue_descriptors", "Descriptors in the chains taken.", c.descriptors());
        s.counter("jvhost_queue_read_bytes", "Bytes the driver gave the device to read (device-readable buffers of"
                + " the chains taken, headers included).", c.bytesRead());
        s.counter("jvhost_queue_written_bytes", "Bytes the device wrote for the driver (used lengths).", c.bytesWritten());
        s.counter("jvhost_queue_kicks", "Kicks (driver notifications) the poller woke up for.", c.kicks());
        s.counter("jvhost_queue_notifications", "Interrupts (call eventfd writes) sent to the driver.", c.notificationsSent());
        s.counter("jvhost_queue_notifications_suppressed", "Used-ring publishes the driver asked not to be"
                + " interrupted for (EVENT_IDX or NO_INTERRUPT).", c.notificationsSuppressed());
        s.counter("jvhost_queue_notifications_coalesced", "Interrupts held back to go out with a later one"
                + " (--coalesce-frames/--coalesce-usecs).", c.notificationsCoalesced());
        for (ChainError e : ChainError.values()) {
            s.drops(e.name().toLowerCase(Locale.ROOT), c.chainsRejected(e));
        }
        s.errors("ring_corruption", c.ringCorruptions());
        s.errors("handler_exception", c.handlerExceptions());
        s.gauge("jvhost_queue_broken", "1 while the queue is latched NEEDS_RESET after ring corruption.", q.isBroken() ? 1 : 0);
    }

    static String typeName(int type) {
        return switch (type) {
            case 1 -> "net";
            case 2 -> "blk";
            case 4 -> "rng";
            default -> "virtio-" + type;
        };
    }
}
