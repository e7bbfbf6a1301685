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
 * interrupts (it polls the used rings, as fio's hipri and SPDK's virtio driver do) and kicks only
 * when the device asks for it. Without EVENT_IDX: VRING_AVAIL_F_NO_INTERRUPT, and a kick unless
 * the device set VRING_USED_F_NO_NOTIFY. With EVENT_IDX (as SPDK's virtio-blk and Linux guests
 * negotiate it): used_event kept where the device never reaches it, and a kick only when the
 * device's avail_event lies among the entries made available since the last check
 * (vring_need_event). The two differ for a device that suppresses kicks only through avail_event,
 * as qemu-storage-daemon (libvhost-user) does: it never sets NO_NOTIFY.
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
    /** Each queue's avail index at its last kick check (EVENT_IDX's "old"). */
    private final int[] checkedAvail;
    private boolean eventIdx;
    private long kicks;

    PollingDriver(Frontend frontend, GuestRam ram, DriverQueue... queues) {
        this.frontend = frontend;
        this.ram = ram;
        this.queues = queues;
        this.used = new MemorySegment[queues.length];
        this.lastUsed = new int[queues.length];
        this.checkedAvail = new int[queues.length];
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
            kickIfNeeded(queue);
        }
        return n;
    }

    /** Drive the queues with EVENT_IDX (negotiated by the subclass before the rings start). Driver thread. */
    final void useEventIdx() {
        eventIdx = true;
        for (int q = 0; q < queues.length; q++) {
            queues[q].setUsedEvent(neverUsedEvent(q));
            checkedAvail[q] = queues[q].availIdx();
        }
    }

    final boolean eventIdx() {
        return eventIdx;
    }

    /** Kicks sent so far. */
    final long kicks() {
        return kicks;
    }

    /**
     * A used_event the device cannot reach before the driver moves it again (SPDK's choice): the
     * device publishes at most a ring's worth beyond what the driver consumed.
     */
    private int neverUsedEvent(int queue) {
        return (lastUsed[queue] - queues[queue].size() - 1) & 0xFFFF;
    }

    /** Kicks queue {@code queue} (an index into {@link #queues}) if the device asks for it, after making chains available. */
    final void kickIfNeeded(int queue) {
        DriverQueue q = queues[queue];
        if (!eventIdx) {
            if (kickIfNeeded(q)) {
                kicks++;
            }
            return;
        }
        q.setUsedEvent(neverUsedEvent(queue));
        VarHandle.fullFence(); // our avail index store before reading the device's avail_event
        int now = q.availIdx(), old = checkedAvail[queue], event = q.availEvent();
        checkedAvail[queue] = now;
        if (((now - event - 1) & 0xFFFF) < ((now - old) & 0xFFFF)) { // vring_need_event
            q.kick();
            kicks++;
        }
    }

    /** Without EVENT_IDX: kicks unless the device set NO_NOTIFY; returns whether it kicked. */
    static boolean kickIfNeeded(DriverQueue q) {
        VarHandle.fullFence(); // our avail index store before reading the device's flags
        if ((q.usedFlags() & 1) == 0) { // VRING_USED_F_NO_NOTIFY
            q.kick();
            return true;
        }
        return false;
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
