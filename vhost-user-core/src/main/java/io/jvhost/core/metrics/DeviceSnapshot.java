package io.jvhost.core.metrics;

import java.util.List;

/**
 * One device's values at a scrape.
 *
 * @param device  its name, the {@code device} label ({@code blk}, {@code net0}, ...)
 * @param type    what it is ({@code blk}, {@code net}, {@code rng}, or {@code virtio-N})
 * @param samples device-wide values (not per queue)
 * @param queues  one snapshot per queue, in queue order
 */
public record DeviceSnapshot(String device, String type, List<Sample> samples, List<QueueSnapshot> queues) {
    public DeviceSnapshot {
        samples = List.copyOf(samples);
        queues = List.copyOf(queues);
    }
}
