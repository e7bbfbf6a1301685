package io.jvhost.testkit;

import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;

/**
 * A device's backend in this process, served over a real Unix socket, and a simulated guest
 * connected to it: a {@link Frontend} that has done QEMU 7.2's handshake, {@link GuestRam}, and,
 * once {@linkplain #startQueues started}, one {@link DriverQueue} per queue. A device's own test
 * rig extends it with the device's requests and checks (virtio-blk's BlkRig, virtio-net's NetRig).
 * Test thread only.
 */
public class DeviceRig implements AutoCloseable {
    /** How long a test waits for a reply or a used element before it fails. */
    public static final Duration TIMEOUT = Duration.ofSeconds(10);

    public final Backend backend;
    public final Frontend frontend;
    public final GuestRam ram;
    /**
     * What GET_FEATURES offered at connect time, as the rig's driver takes it: RING_PACKED only on a
     * packed rig, IN_ORDER only on an in-order one ({@link Frontend#driverRings}).
     */
    public final long offered;
    /** The layout of the rings {@link #startQueues} builds, and whether their driver accepts IN_ORDER. */
    public final DriverQueue.Layout layout;
    public final boolean inOrder;
    private final ServedDevice served;
    private DriverQueue[] started = new DriverQueue[0];

    /**
     * Serves {@code device} as backend {@code name}, connects a frontend that does QEMU's handshake
     * for {@code queueCount} queues, and maps {@code ramBytes} of guest RAM.
     */
    protected DeviceRig(String name, VirtioDevice device, int queueCount, long ramBytes) throws IOException {
        this(name, device, BackendOptions.DEFAULT, queueCount, ramBytes);
    }

    /** As {@link #DeviceRig(String, VirtioDevice, int, long)}, the backend run with {@code options}. */
    protected DeviceRig(String name, VirtioDevice device, BackendOptions options, int queueCount, long ramBytes)
            throws IOException {
        this(name, device, options, queueCount, ramBytes, DriverQueue.Layout.SPLIT, false);
    }

    /**
     * As {@link #DeviceRig(String, VirtioDevice, BackendOptions, int, long)}, the driver using rings
     * of {@code layout} and accepting IN_ORDER if {@code inOrder}: the same device tests on either.
     */
    protected DeviceRig(String name, VirtioDevice device, BackendOptions options, int queueCount, long ramBytes,
                        DriverQueue.Layout layout, boolean inOrder) throws IOException {
        this.layout = layout;
        this.inOrder = inOrder;
        ServedDevice s = ServedDevice.start(name, device, options);
        Frontend f = null;
        try {
            f = s.connect(TIMEOUT);
            f.driverRings(layout, inOrder);
            this.offered = f.handshakeLikeQemu(queueCount);
            this.ram = new GuestRam(ramBytes);
        } catch (IOException | RuntimeException e) {
            if (f != null) {
                f.close();
            }
            s.close();
            throw e;
        }
        this.served = s;
        this.frontend = f;
        this.backend = s.backend;
    }

    /** As the constructor, for a test that needs nothing more than the rig. */
    public static DeviceRig serve(String name, VirtioDevice device, int queueCount, long ramBytes) throws IOException {
        return new DeviceRig(name, device, queueCount, ramBytes);
    }

    /** As {@link #serve(String, VirtioDevice, int, long)}, the driver on rings of {@code layout}. */
    public static DeviceRig serve(String name, VirtioDevice device, int queueCount, long ramBytes,
                                  DriverQueue.Layout layout, boolean inOrder) throws IOException {
        return new DeviceRig(name, device, BackendOptions.DEFAULT, queueCount, ramBytes, layout, inOrder);
    }

    /** A fresh queue {@code index} of {@code size} in the rig's layout (in order if the rig is). */
    public DriverQueue newQueue(int index, int size) throws IOException {
        return new DriverQueue(ram, index, size, layout).inOrder(inOrder);
    }

    /**
     * Starts queues {@code 0 .. count - 1}, each of {@code queueSize} descriptors in the rig's
     * layout, as QEMU does at DRIVER_OK, the driver accepting {@code features}; returns them.
     */
    public DriverQueue[] startQueues(long features, int count, int queueSize) throws IOException {
        started = new DriverQueue[count];
        for (int i = 0; i < count; i++) {
            started[i] = newQueue(i, queueSize);
        }
        frontend.startLikeQemu(features, ram, started);
        return started;
    }

    public Path socket() {
        return served.server.path();
    }

    /**
     * Ends the session and waits until the backend has cleaned up after it (the server accepts the
     * next frontend only then), so no poller or I/O worker touches guest memory once it goes; then
     * stops the backend and frees the queues and guest RAM.
     */
    @Override
    public void close() throws IOException {
        try {
            frontend.close();
            served.awaitSessionsEnded(TIMEOUT);
        } finally {
            served.close();
            for (DriverQueue q : started) {
                q.close();
            }
            ram.close();
        }
    }
}
