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
 */
public record DeviceSet(List<VirtioDevice> devices, AutoCloseable storage, Runnable status, Runnable watch) {
    public DeviceSet {
        devices = List.copyOf(devices);
    }

    /** One device with nothing else to close, print or watch. */
    public static DeviceSet of(VirtioDevice device) {
        return new DeviceSet(List.of(device), null, () -> { }, null);
    }
}
