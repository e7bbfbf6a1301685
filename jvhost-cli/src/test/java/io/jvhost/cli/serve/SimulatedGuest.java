package io.jvhost.cli.serve;

import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import java.io.IOException;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A guest on one jvhost socket, simulated with the testkit: QEMU 7.2's handshake and DRIVER_OK
 * sequence, then requests on queue 0 (an rng read, a blk read of sector 0). Test thread only.
 */
public final class SimulatedGuest implements AutoCloseable {
    static final Duration TIMEOUT = Duration.ofSeconds(10);

    final Frontend frontend;
    final GuestRam ram;
    final DriverQueue queue;

    private SimulatedGuest(Frontend frontend, GuestRam ram, DriverQueue queue) {
        this.frontend = frontend;
        this.ram = ram;
        this.queue = queue;
    }

    /** Connects to {@code socket} and starts queue 0 as QEMU does, the driver accepting VERSION_1 only. */
    public static SimulatedGuest start(Path socket) throws IOException {
        Frontend f = Frontend.connect(socket, TIMEOUT.toMillis()).replyTimeout(TIMEOUT);
        GuestRam ram = null;
        DriverQueue q = null;
        try {
            long offered = f.handshakeLikeQemu(1);
            ram = new GuestRam(4 << 20);
            q = new DriverQueue(ram, 0, 64);
            f.startLikeQemu(offered & VirtioFeatures.bit(VirtioFeatures.VERSION_1), ram, q);
            return new SimulatedGuest(f, ram, q);
        } catch (IOException | RuntimeException e) {
            f.close();
            if (q != null) {
                q.close();
            }
            if (ram != null) {
                ram.close();
            }
            throw e;
        }
    }

    /** virtio-rng: asks for {@code bytes} of entropy; returns how many the device wrote, -1 if it never answered. */
    public int rngRead(int bytes) {
        long gpa = ram.allocate(bytes, 64);
        queue.post(Buffer.writable(gpa, bytes));
        DriverQueue.Used u = queue.awaitUsed(TIMEOUT);
        return u == null ? -1 : u.length();
    }

    /** virtio-blk: reads sector 0; returns the status byte (0 OK, 1 IOERR), -1 if the device never answered. */
    public int blkReadSector0() {
        long header = ram.allocate(16, 16), data = ram.allocate(512, 512), status = ram.allocate(1, 1);
        ram.at(header, 16).set(JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN), 0, 0); // VIRTIO_BLK_T_IN
        ram.at(header, 16).set(JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN), 8, 0L); // sector 0
        ram.at(status, 1).set(JAVA_BYTE, 0, (byte) 0x7F);
        queue.post(Buffer.readable(header, 16), Buffer.writable(data, 512), Buffer.writable(status, 1));
        DriverQueue.Used u = queue.awaitUsed(TIMEOUT);
        return u == null ? -1 : ram.at(status, 1).get(JAVA_BYTE, 0);
    }

    @Override
    public void close() {
        frontend.close();
        queue.close();
        ram.close();
    }
}
