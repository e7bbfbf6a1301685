package io.jvhost.perf.jmh;

import io.jvhost.core.ring.VirtQueue;
import io.jvhost.net.BenchPorts;
import io.jvhost.net.Frames;
import io.jvhost.net.GuestNic;
import io.jvhost.net.NetDevice;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.TearDown;

/**
 * Receive fill, {@link GuestNic#deliver}: take receive chains, write the virtio-net header and the
 * frame into guest memory, complete, and publish once per batch of 32 frames. Score: ns per frame.
 * Cases are {@code SIZE-single} (no MRG_RXBUF, one 2 KiB buffer per frame), {@code SIZE-mrg}
 * (MRG_RXBUF, 2 KiB buffers: num_buffers = 1) and {@code 1518-mrg-512} (MRG_RXBUF with 512-byte
 * buffers: each frame spans 3 chains). {@code layout}: the split or the packed ring, each with or
 * without VIRTIO_F_IN_ORDER (DPDK's virtio-user negotiates it by default); the packed driver makes
 * a slot available with two stores per frame, counted in the score ({@link GuestRing}).
 */
public class MergeableRxBench extends NanosPerOp {
    static final int BATCH = 32, RING = 256, HEADER = 12;

    @Param({"64-single", "1518-single", "64-mrg", "1518-mrg", "1518-mrg-512"})
    public String frameCase;

    @Param({"split", "split-in-order", "packed", "packed-in-order"})
    public String layout;

    private GuestRing ring;
    private GuestNic nic;
    private VirtQueue q;
    private MemorySegment frame;
    private int size;
    private int chainsPerFrame;
    private final MemorySegment[] frames = new MemorySegment[BATCH];
    private final long[] offsets = new long[BATCH];
    private final long[] lengths = new long[BATCH];

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        String[] parts = frameCase.split("-");
        size = Integer.parseInt(parts[0]);
        boolean mergeable = parts[1].equals("mrg");
        int buffer = parts.length > 2 ? Integer.parseInt(parts[2]) : 2048;
        chainsPerFrame = mergeable ? (HEADER + size + buffer - 1) / buffer : 1;
        NetDevice device = new NetDevice(new BenchPorts.Drop(), 1, 0x52_54_00_00_00_01L, 1500);
        device.featuresAcked(1L << 32 | (mergeable ? 1L << 15 : 0)); // VERSION_1, MRG_RXBUF
        ring = layout.startsWith("packed") ? GuestRing.packed(RING, 4 << 20) : new GuestRing(RING, 4 << 20);
        ring.receiveBuffers(buffer, VirtQueue.INDIRECT | (layout.endsWith("in-order") ? VirtQueue.IN_ORDER : 0));
        q = ring.queue;
        device.handler(0).started(q);
        nic = device.nic();
        frame = Arena.ofAuto().allocate(size, 64);
        MemorySegment.copy(MemorySegment.ofArray(Frames.udp(0x02_00_00_00_00_01L, 0x52_54_00_00_00_01L, size)), 0,
                frame, 0, size);
        Arrays.fill(frames, frame);
        Arrays.fill(lengths, size);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (nic.counters(0).rxDropped != 0) {
            throw new IllegalStateException("frames dropped: " + nic.counters(0));
        }
        ring.close();
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public int deliver() {
        ring.makeAvailable(BATCH * chainsPerFrame);
        int r = 0;
        for (int i = 0; i < BATCH; i++) {
            r |= nic.deliver(0, frame, 0, size);
        }
        q.publish();
        if (r != GuestNic.DELIVERED) {
            throw new IllegalStateException("deliver returned " + r);
        }
        return r;
    }

    /** The same frames through the burst path ({@link GuestNic#deliver(int, MemorySegment[], long[], long[], int)}): what a port with a batch of frames uses. */
    @Benchmark
    @OperationsPerInvocation(BATCH)
    public int deliverBurst() {
        ring.makeAvailable(BATCH * chainsPerFrame);
        int n = nic.deliver(0, frames, offsets, lengths, BATCH);
        q.publish();
        if (n != BATCH) {
            throw new IllegalStateException("burst delivered " + n);
        }
        return n;
    }
}
