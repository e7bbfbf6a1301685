package io.jvhost.cli;

import io.jvhost.core.device.VirtioDevice;

import java.util.List;

/**
 * What a device command's options open, before anything listens: one device per {@code --socket},
 * what to close once every queue has stopped (a store, which flushes then), what to print every
 * 10 seconds, and what to run every second (a grown image reaching the guest).
 *
 * @param devices one per socket, in socket order
 * @param storage closed last, or null
 * @param status  printed every 10 s and at exit; never null
 * @param watch   run every second, or null
 * @param metrics what else reports metrics beside the devices' backends (a VXLAN uplink)
 */
public record DeviceSet(List<VirtioDevice> devices, AutoCloseable storage, Runnable status, Runnable watch,
                        List<io.jvhost.core.metrics.MetricsSource> metrics) {
    public DeviceSet {
        devices = List.copyOf(devices);
        metrics = List.copyOf(metrics);
    }

    public DeviceSet(List<VirtioDevice> devices, AutoCloseable storage, Runnable status, Runnable watch) {
        this(devices, storage, status, watch, List.of());
    }

    /** One device with nothing else to close, print or watch. */
    public static DeviceSet of(VirtioDevice device) {
        return new DeviceSet(List.of(device), null, () -> { }, null);
    }
}
