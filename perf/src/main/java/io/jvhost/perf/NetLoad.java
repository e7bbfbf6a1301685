package io.jvhost.perf;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import io.jvhost.net.Frames;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.function.LongSupplier;

/**
 * A virtio-net guest driver in this JVM, for measuring jvhost without DPDK: a {@link Frontend} over
 * the backend's socket, {@link GuestRam}, and queue pair 0 kept busy from one polling thread. The
 * receive queue always has every buffer posted (re-posted as soon as it is used); with
 * {@code transmit} the transmit queue is kept full of one fixed frame. Like {@link BlkLoad} the
 * driver asks for no interrupts and kicks only when the device did not set VRING_USED_F_NO_NOTIFY;
 * EVENT_IDX is not negotiated.
 *
 * <p>One thread: the one that calls {@link #run}.
 */
final class NetLoad implements AutoCloseable {
    static final int QUEUE_SIZE = 256, BUFFER = 2048, HEADER = 12;
    private static final long MRG_RXBUF = 1L << 15, VERSION_1 = 1L << 32;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle U16_VH = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    /** What one run measured: frames the device counted (both directions) and bytes allocated per frame. */
    record Result(long frames, double seconds, double allocPerFrame) {}

    private final Frontend frontend;
    private final GuestRam ram;
    private final DriverQueue rx, tx;
    private final MemorySegment rxUsed, txUsed;
    private final boolean transmit;
    private int rxLastUsed, txLastUsed;

    private NetLoad(Frontend frontend, GuestRam ram, DriverQueue rx, DriverQueue tx, boolean transmit) {
        this.frontend = frontend;
        this.ram = ram;
        this.rx = rx;
        this.tx = tx;
        this.transmit = transmit;
        this.rxUsed = ram.at(rx.usedHva() - GuestRam.HVA_BASE, 6 + 8L * QUEUE_SIZE);
        this.txUsed = ram.at(tx.usedHva() - GuestRam.HVA_BASE, 6 + 8L * QUEUE_SIZE);
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
            if (rx != null) {
                rx.close();
            }
            if (tx != null) {
                tx.close();
            }
            if (ram != null) {
                ram.close();
            }
            fe.close();
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
        long start = frames.getAsLong();
        PollerAllocation alloc = null;
        long measureFrom = 0, measureStart = 0;
        while (true) {
            long now = System.nanoTime();
            if (now > deadline) {
                throw new IllegalStateException("timed out: " + (frames.getAsLong() - start) + " frames moved");
            }
            long n = frames.getAsLong();
            if (alloc == null && n - start >= warmupFrames) {
                alloc = PollerAllocation.start(threadNames);
                measureFrom = frames.getAsLong();
                measureStart = now;
            }
            if (alloc != null && n - measureFrom >= measureFrames) {
                long bytes = alloc.bytesSinceStart();
                long moved = frames.getAsLong() - measureFrom;
                return new Result(moved, (System.nanoTime() - measureStart) / 1e9, PollerAllocation.perUnit(bytes, moved));
            }
            rxLastUsed = recycle(rx, rxUsed, rxLastUsed);
            if (transmit) {
                txLastUsed = recycle(tx, txUsed, txLastUsed);
            }
            Thread.onSpinWait();
        }
    }

    /** Makes every chain the device used available again; returns the new last used index. */
    private static int recycle(DriverQueue q, MemorySegment used, int lastUsed) {
        int usedIdx = Short.toUnsignedInt((short) U16_VH.getAcquire(used, 2L));
        if (usedIdx == lastUsed) {
            return lastUsed;
        }
        while (lastUsed != usedIdx) {
            int id = used.get(U32, 4 + 8L * (lastUsed & (QUEUE_SIZE - 1)));
            lastUsed = (lastUsed + 1) & 0xFFFF;
            q.makeAvailable(id);
        }
        kickIfNeeded(q);
        return lastUsed;
    }

    private static void kickIfNeeded(DriverQueue q) {
        VarHandle.fullFence(); // our avail index store before reading the device's flags
        if ((q.usedFlags() & 1) == 0) { // VRING_USED_F_NO_NOTIFY
            q.kick();
        }
    }

    @Override
    public void close() {
        frontend.close();
        rx.close();
        tx.close();
        ram.close();
    }
}
