package io.jvhost.perf;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.device.VirtioFeatures;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.SplittableRandom;

import org.HdrHistogram.Histogram;

/**
 * A virtio-blk load generator: a {@link PollingDriver} that keeps {@code depth} requests in flight
 * on each queue. Each request slot owns three fixed descriptors (header, data, status), so
 * completions may come back in any order.
 *
 * <p>One thread: the one that calls {@link #run}.
 */
final class BlkLoad extends PollingDriver {
    static final int QUEUE_SIZE = 256;
    static final int IN = 0, OUT = 1;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** What one run does: request type and size, random or sequential, requests in flight per queue. */
    record Workload(String name, boolean write, int blockSize, boolean random, int depth) {}

    /**
     * What one run measured; {@code cpuPerRequest} is the backend's CPU nanoseconds per request, NaN
     * when not measured; {@code kicksPerRequest} the kicks the driver sent per request;
     * {@code warmupSeconds} how long it warmed before the measured window.
     */
    record Result(long requests, double seconds, double warmupSeconds, Histogram latencyNanos, long errors, double allocPerRequest,
                  double cpuPerRequest, double kicksPerRequest) {
        double iops() {
            return requests / seconds;
        }
    }

    private final long diskBytes;
    private final int queueSize;
    private Pass pass;

    private BlkLoad(Frontend frontend, GuestRam ram, DriverQueue[] queues, long diskBytes) {
        super(frontend, ram, queues);
        this.diskBytes = diskBytes;
        this.queueSize = queues[0].size();
    }

    /** Connects to {@code socket} and starts {@code queueCount} queues of {@link #QUEUE_SIZE} as QEMU 7.2 would. */
    static BlkLoad connect(Path socket, int queueCount, long ramBytes, long diskBytes) throws IOException {
        return connect(socket, queueCount, QUEUE_SIZE, ramBytes, diskBytes);
    }

    /**
     * The smallest queue size (a power of two, at least {@link #QUEUE_SIZE}) that holds {@code depth}
     * requests of three descriptors each: 256 up to QD 85, 512 for QD 128.
     */
    static int queueSizeFor(int depth) {
        int size = QUEUE_SIZE;
        while (size < 3 * depth) {
            size *= 2;
        }
        return size;
    }

    /** Connects to {@code socket} and starts {@code queueCount} queues of {@code queueSize} descriptors, with EVENT_IDX if offered. */
    static BlkLoad connect(Path socket, int queueCount, int queueSize, long ramBytes, long diskBytes) throws IOException {
        return connect(socket, queueCount, queueSize, ramBytes, diskBytes, true);
    }

    /**
     * Connects to {@code socket} and starts {@code queueCount} queues of {@code queueSize}
     * descriptors as QEMU 7.2 would; with {@code eventIdx}, negotiates EVENT_IDX when the backend
     * offers it, as SPDK's virtio-blk driver and Linux guests do.
     */
    static BlkLoad connect(Path socket, int queueCount, int queueSize, long ramBytes, long diskBytes, boolean eventIdx)
            throws IOException {
        return connect(socket, queueCount, queueSize, ramBytes, diskBytes, eventIdx, false);
    }

    /** As above, the guest's RAM on 2 MiB hugepages when {@code hugepages} (SPDK's vhost target needs that). */
    static BlkLoad connect(Path socket, int queueCount, int queueSize, long ramBytes, long diskBytes, boolean eventIdx,
                           boolean hugepages) throws IOException {
        Frontend fe = Frontend.connect(socket, 10_000).replyTimeout(Duration.ofSeconds(10));
        GuestRam ram = null;
        DriverQueue[] qs = new DriverQueue[queueCount];
        try {
            long offered = fe.getFeatures();
            long pf = fe.getProtocolFeatures() & (bit(ProtocolFeatures.MQ) | bit(ProtocolFeatures.REPLY_ACK)
                    | bit(ProtocolFeatures.CONFIG) | bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS) | bit(ProtocolFeatures.STATUS));
            fe.setProtocolFeatures(pf);
            if ((pf & bit(ProtocolFeatures.MQ)) != 0 && fe.getQueueNum() < queueCount) {
                throw new IOException("backend has fewer than " + queueCount + " queues");
            }
            if ((pf & bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS)) != 0) {
                fe.getMaxMemSlots();
            }
            fe.setOwner();
            fe.getFeatures();
            long features = offered & ~(bit(VirtioFeatures.LOG_ALL)
                    | bit(VirtioFeatures.ACCESS_PLATFORM) | bit(VirtioFeatures.RING_PACKED)
                    | bit(VirtioFeatures.NOTIFY_ON_EMPTY) | (eventIdx ? 0 : bit(VirtioFeatures.RING_EVENT_IDX)));
            boolean withEventIdx = (features & bit(VirtioFeatures.RING_EVENT_IDX)) != 0;
            ram = hugepages ? GuestRam.onHugepages(ramBytes) : new GuestRam(ramBytes);
            for (int i = 0; i < queueCount; i++) {
                qs[i] = new DriverQueue(ram, i, queueSize);
                if (withEventIdx) {
                    qs[i].setUsedEvent((-queueSize - 1) & 0xFFFF); // no interrupts: see useEventIdx
                } else {
                    qs[i].setNoInterrupt(true);
                }
            }
            check(fe.setFeatures(features | bit(VirtioFeatures.PROTOCOL_FEATURES)), "SET_FEATURES");
            check(fe.setMemTable(ram), "SET_MEM_TABLE");
            for (DriverQueue q : qs) {
                check(fe.setVringNum(q.index(), q.size()), "SET_VRING_NUM");
                check(fe.setVringBase(q.index(), 0), "SET_VRING_BASE");
                check(fe.setVringAddr(q), "SET_VRING_ADDR");
                check(fe.setVringKick(q.index(), q.kickFd()), "SET_VRING_KICK");
                check(fe.setVringCall(q.index(), q.callFd()), "SET_VRING_CALL");
            }
            for (DriverQueue q : qs) {
                check(fe.setVringEnable(q.index(), true), "SET_VRING_ENABLE");
            }
            if ((pf & bit(ProtocolFeatures.STATUS)) != 0) {
                check(fe.setStatus(0x0F), "SET_STATUS");
            }
            BlkLoad load = new BlkLoad(fe, ram, qs, diskBytes);
            if (withEventIdx) {
                load.useEventIdx();
            }
            return load;
        } catch (IOException | RuntimeException e) {
            close(fe, ram, qs);
            throw e;
        }
    }

    private static long bit(int n) {
        return 1L << n;
    }

    private static void check(long ack, String what) throws IOException {
        if (ack != 0) {
            throw new IOException(what + " refused by the backend");
        }
    }

    /** Per-queue request slots: slot s uses descriptors 3s (header), 3s+1 (data), 3s+2 (status). */
    private final class Lane {
        final DriverQueue q;
        final MemorySegment[] header;
        final MemorySegment[] status;
        final long[] submitted;
        long nextSequential;

        Lane(DriverQueue q, Workload w) {
            this.q = q;
            this.header = new MemorySegment[w.depth()];
            this.status = new MemorySegment[w.depth()];
            this.submitted = new long[w.depth()];
            this.nextSequential = (diskBytes / queues.length) * q.index() / w.blockSize() * w.blockSize();
            for (int s = 0; s < w.depth(); s++) {
                long h = ram.allocate(16, 16), d = ram.allocate(w.blockSize(), 4096), st = ram.allocate(1, 1);
                header[s] = ram.at(h, 16);
                status[s] = ram.at(st, 1);
                if (w.write()) {
                    MemorySegment data = ram.at(d, w.blockSize());
                    for (long o = 0; o < w.blockSize(); o += 8) {
                        data.set(U64, o, 0x6a76686f73740000L ^ o);
                    }
                }
                q.writeDescriptor(3 * s, h, 16, DriverQueue.F_NEXT, 3 * s + 1);
                q.writeDescriptor(3 * s + 1, d, w.blockSize(),
                        DriverQueue.F_NEXT | (w.write() ? 0 : DriverQueue.F_WRITE), 3 * s + 2);
                q.writeDescriptor(3 * s + 2, st, 1, DriverQueue.F_WRITE, 0);
            }
        }
    }

    /** One run: its lanes, its counts and its measured window. */
    private final class Pass {
        final Workload w;
        final Lane[] lanes = new Lane[queues.length];
        final SplittableRandom random;
        final long blocks;
        final Histogram hist = new Histogram(60_000_000_000L, 3);
        final Window window;
        long warmed, requests, errors, kicksBefore = -1, kicksAfter = -1;
        int inFlight;
        boolean stopping;

        Pass(Workload w, long seed, CpuTime.Meter cpu, String... threadNames) {
            this.w = w;
            this.random = new SplittableRandom(seed);
            this.blocks = diskBytes / w.blockSize();
            this.window = new Window(cpu, threadNames);
            for (int i = 0; i < lanes.length; i++) {
                lanes[i] = new Lane(queues[i], w);
            }
        }

        /** Counts a completed request and, unless the run is stopping, submits the slot again. */
        boolean completed(int queue, int head, long now) {
            Lane l = lanes[queue];
            int slot = head / 3;
            if (head % 3 != 0 || slot >= w.depth()) {
                errors++;
                return false;
            }
            if (l.status[slot].get(ValueLayout.JAVA_BYTE, 0) != 0) {
                errors++;
            }
            if (window.measuring()) {
                hist.recordValue(Math.min(now - l.submitted[slot], hist.getHighestTrackableValue()));
                requests++;
            } else if (!stopping) {
                warmed++;
            }
            if (stopping) {
                inFlight--;
                return false;
            }
            submit(l, slot, now);
            return true;
        }

        void submit(Lane l, int slot, long now) {
            long offset;
            if (w.random()) {
                offset = random.nextLong(blocks) * w.blockSize();
            } else {
                offset = l.nextSequential;
                l.nextSequential = offset + w.blockSize() >= diskBytes ? 0 : offset + w.blockSize();
            }
            MemorySegment h = l.header[slot];
            h.set(U32, 0, w.write() ? OUT : IN);
            h.set(U32, 4, 0);
            h.set(U64, 8, offset / 512);
            l.status[slot].set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
            l.submitted[slot] = now;
            l.q.makeAvailable(3 * slot);
        }
    }

    /**
     * Runs {@code w} for {@code warmup + measure}; latencies and counts only of requests completed
     * after the warm-up, which lasts at least {@code warmup} and until this JVM's JIT has settled
     * ({@link JitQuiet}). Leaves nothing in flight. Allocation is measured on the threads whose names
     * contain one of {@code threadNames} (none: not measured).
     */
    Result run(Workload w, Duration warmup, Duration measure, long seed, String... threadNames) {
        return run(w, warmup, 0, measure, 0, seed, true, CpuTime.Meter.NONE, threadNames);
    }

    /** As {@link #run(Workload, Duration, Duration, long, String...)}, also measuring the CPU time {@code cpu} reads. */
    Result run(Workload w, Duration warmup, Duration measure, long seed, CpuTime.Meter cpu, String... threadNames) {
        return run(w, warmup, 0, measure, 0, seed, true, cpu, threadNames);
    }

    /**
     * As {@link #run(Workload, Duration, Duration, long, String...)}, but each phase lasts until both
     * its time and its number of completed requests are reached.
     */
    Result run(Workload w, Duration warmup, long warmupRequests, Duration measure, long measureRequests, long seed,
               String... threadNames) {
        return run(w, warmup, warmupRequests, measure, measureRequests, seed, false, CpuTime.Meter.NONE, threadNames);
    }

    /**
     * As the above, also measuring the CPU time {@code cpu} reads over the measured window; with
     * {@code untilJitSettles}, the warm-up also lasts until the JIT has settled.
     */
    private Result run(Workload w, Duration warmup, long warmupRequests, Duration measure, long measureRequests, long seed,
               boolean untilJitSettles, CpuTime.Meter cpu, String... threadNames) {
        if (w.depth() < 1 || 3 * w.depth() > queueSize) {
            throw new IllegalArgumentException("queue depth must be 1.." + queueSize / 3 + " on queues of " + queueSize);
        }
        Pass p = new Pass(w, seed, cpu, threadNames);
        pass = p;
        long started = System.nanoTime(), warmupEnd = started + warmup.toNanos();
        JitQuiet jit = untilJitSettles ? new JitQuiet(started) : null;
        for (Lane l : p.lanes) {
            for (int s = 0; s < w.depth(); s++) {
                p.submit(l, s, System.nanoTime());
            }
            kickIfNeeded(l.q.index());
        }
        p.inFlight = p.lanes.length * w.depth();
        long drainDeadline = Long.MAX_VALUE;
        while (p.inFlight > 0) {
            long now = System.nanoTime();
            if (!p.window.begun() && now >= warmupEnd && p.warmed >= warmupRequests && (jit == null || jit.settled(now))) {
                p.window.begin(now);
                p.kicksBefore = kicks();
            }
            if (p.window.measuring() && now - p.window.begin() >= measure.toNanos() && p.requests >= measureRequests) {
                p.window.end(now);
                p.kicksAfter = kicks();
                p.stopping = true;
                drainDeadline = now + Duration.ofSeconds(10).toNanos();
            }
            if (now > drainDeadline) {
                p.errors += p.inFlight; // the backend stopped answering
                break;
            }
            for (int q = 0; q < p.lanes.length; q++) {
                poll(q);
            }
        }
        pass = null;
        return new Result(p.requests, p.window.seconds(measure.toNanos() / 1e9),
                p.window.begun() ? (p.window.begin() - started) / 1e9 : Double.NaN, p.hist, p.errors,
                p.window.allocatedPer(p.requests), p.window.cpuPer(p.requests),
                p.kicksAfter < 0 || p.requests == 0 ? Double.NaN : (double) (p.kicksAfter - p.kicksBefore) / p.requests);
    }

    @Override
    boolean onUsed(int queue, int head, long now) {
        return pass.completed(queue, head, now);
    }
}
