package io.jvhost.perf.jmh;

import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.ring.VirtQueue;
import io.jvhost.net.BenchPorts;
import io.jvhost.net.Frames;
import io.jvhost.net.GuestNic;
import io.jvhost.net.NetDevice;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.TearDown;

/**
 * One round of {@code ./jvhost bench net --dirs loop} on the device's side, on one thread: the
 * guest makes a burst of 64-byte frames available on the transmit queue and as many buffers on
 * the receive queue; the transmit handler takes the burst, the reflecting port ({@code --reflect})
 * swaps the MACs and delivers it into the receive queue, and both queues are published. Score: ns
 * per frame. With the driver on the same core there is no cache line to wait for, so this is the
 * compute a round costs, what the near placement of the live bench pays, without its noise
 * (perf/RESULTS.md, "Loopback timed phase by phase"). Mergeable buffers and IN_ORDER, as DPDK's
 * virtio-user negotiates them. Pin it to one CPU ({@code taskset -c 1}) and read that CPU's copy
 * speed first: the host slows one vCPU at times, and every fork on it then reads ~1.4x slower
 * (perf/RESULTS.md, "The slow mode is a slow vCPU").
 */
public class LoopbackBench extends NanosPerOp {
    static final int BURST = 32, HEADER = 12, FRAME = 64;

    @Param({"split", "packed"})
    public String layout;

    /** Descriptors per ring; the receive buffers (2 KiB each) of a ring of 256 fill 512 KiB, about an L2 cache. */
    @Param({"256"})
    public int ring;

    private GuestRing rx, tx;
    private NetDevice device;
    private GuestNic nic;
    private VirtQueue txq, rxq;
    private QueueHandler transmit;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        device = new NetDevice(new BenchPorts.Reflect(), 1, 0x52_54_00_00_00_01L, 1500);
        device.featuresAcked(1L << 32 | 1L << 15 | 1L << 35); // VERSION_1, MRG_RXBUF, IN_ORDER
        boolean packed = layout.equals("packed");
        int options = VirtQueue.IN_ORDER;
        rx = (packed ? GuestRing.packed(ring, 4 << 20) : new GuestRing(ring, 4 << 20)).receiveBuffers(2048, options);
        byte[] contents = new byte[HEADER + FRAME];
        System.arraycopy(Frames.udp(0x02_00_00_00_00_01L, 0x52_54_00_00_00_01L, FRAME), 0, contents, HEADER, FRAME);
        tx = (packed ? GuestRing.packed(ring, 4 << 20) : new GuestRing(ring, 4 << 20)).transmitBuffers(contents, options);
        rxq = rx.queue;
        txq = tx.queue;
        device.handler(0).started(rxq); // each call makes the queue's handler: keep them
        transmit = device.handler(1);
        transmit.started(txq);
        nic = device.nic();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        var c = nic.counters(0);
        if (c.rxDropped != 0 || c.txDropped != 0 || c.rxFrames != c.txFrames || c.rxFrames == 0) {
            throw new IllegalStateException("frames lost or refused: " + c);
        }
        rx.close();
        tx.close();
    }

    @Benchmark
    @OperationsPerInvocation(BURST)
    public int round() {
        rx.makeAvailable(BURST);
        tx.makeAvailable(BURST);
        int n = transmit.process(txq, 2 * BURST);
        if (n != BURST) {
            throw new IllegalStateException("sent " + n + " of " + BURST);
        }
        return n;
    }
}
