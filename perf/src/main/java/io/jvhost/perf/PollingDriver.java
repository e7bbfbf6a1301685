package io.jvhost.perf;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * The guest driver that {@link NetLoad} and {@link BlkLoad} share: a {@link Frontend} over the
 * backend's socket, {@link GuestRam} and driver queues, polled from one thread. It asks for no
 * interrupts (VRING_AVAIL_F_NO_INTERRUPT: it polls the used rings, as fio's hipri does) and kicks
 * only when the device did not set VRING_USED_F_NO_NOTIFY; EVENT_IDX is not negotiated.
 *
 * <p>One thread: the one that polls.
 */
abstract class PollingDriver implements AutoCloseable {
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle U16_VH = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    final Frontend frontend;
    final GuestRam ram;
    final DriverQueue[] queues;
    private final MemorySegment[] used;
    private final int[] lastUsed;

    PollingDriver(Frontend frontend, GuestRam ram, DriverQueue... queues) {
        this.frontend = frontend;
        this.ram = ram;
        this.queues = queues;
        this.used = new MemorySegment[queues.length];
        this.lastUsed = new int[queues.length];
        for (int i = 0; i < queues.length; i++) {
            used[i] = ram.at(queues[i].usedHva() - GuestRam.HVA_BASE, 6 + 8L * queues[i].size());
        }
    }

    /**
     * The device used chain {@code head} of queue {@code queue} (an index into {@link #queues}),
     * seen at {@code now} (nanoTime, once per batch); returns whether it made a chain available
     * again, so that the queue may need a kick.
     */
    abstract boolean onUsed(int queue, int head, long now);

    /** Hands every newly used chain of queue {@code queue} to {@link #onUsed}, then kicks if needed; returns how many. */
    final int poll(int queue) {
        MemorySegment u = used[queue];
        int usedIdx = Short.toUnsignedInt((short) U16_VH.getAcquire(u, 2L));
        int last = lastUsed[queue];
        if (usedIdx == last) {
            return 0;
        }
        long now = System.nanoTime();
        int mask = queues[queue].size() - 1, n = 0;
        boolean posted = false;
        while (last != usedIdx) {
            int head = u.get(U32, 4 + 8L * (last & mask));
            last = (last + 1) & 0xFFFF;
            posted |= onUsed(queue, head, now);
            n++;
        }
        lastUsed[queue] = last;
        if (posted) {
            kickIfNeeded(queues[queue]);
        }
        return n;
    }

    static void kickIfNeeded(DriverQueue q) {
        VarHandle.fullFence(); // our avail index store before reading the device's flags
        if ((q.usedFlags() & 1) == 0) { // VRING_USED_F_NO_NOTIFY
            q.kick();
        }
    }

    /** Closes what a driver holds, or what a failed connect had opened so far (nulls skipped). */
    static void close(Frontend frontend, GuestRam ram, DriverQueue... queues) {
        frontend.close();
        for (DriverQueue q : queues) {
            if (q != null) {
                q.close();
            }
        }
        if (ram != null) {
            ram.close();
        }
    }

    @Override
    public void close() {
        close(frontend, ram, queues);
    }

    /**
     * The measured part of a run: when it began and ended, what the named threads allocated in
     * between, and the CPU time the backend spent in between.
     */
    static final class Window {
        private final String[] threadNames;
        private final CpuTime.Window cpu;
        private PollerAllocation allocation;
        private long begin = -1, end = -1, allocated = -1;

        /** Allocation is counted on the threads whose names contain one of {@code threadNames} (none: not counted). */
        Window(String... threadNames) {
            this(CpuTime.Meter.NONE, threadNames);
        }

        /** As {@link #Window(String...)}, and the CPU time {@code cpu} measures. */
        Window(CpuTime.Meter cpu, String... threadNames) {
            this.threadNames = threadNames;
            this.cpu = new CpuTime.Window(cpu);
        }

        void begin(long now) {
            begin = now;
            allocation = PollerAllocation.start(threadNames);
            cpu.begin();
        }

        void end(long now) {
            cpu.end();
            end = now;
            allocated = allocation.bytesSinceStart();
        }

        /** The backend's CPU nanoseconds per unit of work in the window, NaN when not measured. */
        double cpuPer(long units) {
            return cpu.per(units);
        }

        boolean begun() {
            return begin >= 0;
        }

        boolean measuring() {
            return begin >= 0 && end < 0;
        }

        long begin() {
            return begin;
        }

        /** Seconds from begin to end, or {@code otherwise} if the window never closed. */
        double seconds(double otherwise) {
            return end < 0 ? otherwise : (end - begin) / 1e9;
        }

        /** Bytes allocated per unit of work in the window, NaN when not counted. */
        double allocatedPer(long units) {
            return PollerAllocation.perUnit(allocated, units);
        }
    }
}
