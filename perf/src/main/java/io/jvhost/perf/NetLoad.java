package io.jvhost.perf;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import io.jvhost.net.Frames;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.function.LongSupplier;

/**
 * A virtio-net guest driver in this JVM, for measuring jvhost without DPDK: a {@link PollingDriver}
 * on queue pair 0. The receive queue always has every buffer posted (re-posted as soon as it is
 * used); with {@code transmit} the transmit queue is kept full of one fixed frame.
 *
 * <p>One thread: the one that calls {@link #run}.
 */
final class NetLoad extends PollingDriver {
    static final int QUEUE_SIZE = 256, BUFFER = 2048, HEADER = 12;
    private static final long MRG_RXBUF = 1L << 15, VERSION_1 = 1L << 32;

    /** What one run measured: frames the device counted (both directions) and bytes allocated per frame. */
    record Result(long frames, double seconds, double allocPerFrame) {}

    private final boolean transmit;

    private NetLoad(Frontend frontend, GuestRam ram, DriverQueue rx, DriverQueue tx, boolean transmit) {
        super(frontend, ram, rx, tx);
        this.transmit = transmit;
    }

    /**
     * Connects to {@code socket}, starts queue pair 0 as QEMU 7.2 would (with or without
     * mrg_rxbuf) and posts the buffers: every receive buffer, and with {@code transmit} a
     * {@code frameSize}-byte frame to {@code destination} in every transmit descriptor.
     */
    static NetLoad connect(Path socket, boolean mergeable, boolean transmit, int frameSize, long destination)
            throws IOException {
        Frontend fe = Frontend.connect(socket, 10_000).replyTimeout(Duration.ofSeconds(10));
        GuestRam ram = null;
        DriverQueue rx = null, tx = null;
        try {
            long offered = fe.handshakeLikeQemu(2);
            ram = new GuestRam(16L << 20);
            rx = new DriverQueue(ram, 0, QUEUE_SIZE);
            tx = new DriverQueue(ram, 1, QUEUE_SIZE);
            rx.setNoInterrupt(true);
            tx.setNoInterrupt(true);
            long features = VERSION_1 | (mergeable ? offered & MRG_RXBUF : 0);
            fe.startLikeQemu(features, ram, rx, tx);
            MemorySegment frame = MemorySegment.ofArray(Frames.udp(0x02_00_00_00_00_02L, destination, frameSize));
            for (int i = 0; i < QUEUE_SIZE; i++) {
                long b = ram.allocate(BUFFER, 64);
                rx.writeDescriptor(i, b, BUFFER, DriverQueue.F_WRITE, 0);
                rx.makeAvailable(i);
                if (transmit) {
                    long t = ram.allocate(HEADER + frame.byteSize(), 64);
                    ram.at(t, HEADER).fill((byte) 0);
                    MemorySegment.copy(frame, 0, ram.at(t + HEADER, frame.byteSize()), 0, frame.byteSize());
                    tx.writeDescriptor(i, t, (int) (HEADER + frame.byteSize()), 0, 0);
                    tx.makeAvailable(i);
                }
            }
            NetLoad load = new NetLoad(fe, ram, rx, tx, transmit);
            kickIfNeeded(rx);
            if (transmit) {
                kickIfNeeded(tx);
            }
            return load;
        } catch (IOException | RuntimeException e) {
            close(fe, ram, rx, tx);
            throw e;
        }
    }

    /**
     * Keeps the rings busy until {@code frames} (the device's count of frames moved, both ways)
     * has grown by {@code warmupFrames}, then measures until it has grown by {@code measureFrames}
     * more: allocation on the threads whose names contain {@code threadNames}. Fails after
     * {@code timeout}.
     */
    Result run(LongSupplier frames, long warmupFrames, long measureFrames, Duration timeout, String... threadNames) {
        long deadline = System.nanoTime() + timeout.toNanos();
        long start = frames.getAsLong(), measureFrom = 0;
        Window window = new Window(threadNames);
        while (true) {
            long now = System.nanoTime();
            if (now > deadline) {
                throw new IllegalStateException("timed out: " + (frames.getAsLong() - start) + " frames moved");
            }
            long n = frames.getAsLong();
            if (!window.begun() && n - start >= warmupFrames) {
                window.begin(now);
                measureFrom = frames.getAsLong();
            }
            if (window.begun() && n - measureFrom >= measureFrames) {
                window.end(System.nanoTime());
                long moved = frames.getAsLong() - measureFrom;
                return new Result(moved, window.seconds(Double.NaN), window.allocatedPer(moved));
            }
            poll(0);
            if (transmit) {
                poll(1);
            }
            Thread.onSpinWait();
        }
    }

    /** Every used chain, received or sent, is made available again as it was. */
    @Override
    boolean onUsed(int queue, int head, long now) {
        queues[queue].makeAvailable(head);
        return true;
    }
}
