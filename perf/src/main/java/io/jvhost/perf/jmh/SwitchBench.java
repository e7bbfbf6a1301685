package io.jvhost.perf.jmh;

import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.ring.VirtQueue;
import io.jvhost.net.Frames;
import io.jvhost.net.L2Switch;
import io.jvhost.net.NetDevice;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.TearDown;

/**
 * The L2 switch: a MAC table {@code lookup} hit, and {@code forward}: a frame from guest A's
 * transmit path ({@code SwitchPort.onFrame}: learn the source, look up the destination, copy into
 * B's injection queue) and then B's receive handler draining it into B's receive ring (copy into
 * guest memory, used element, publish). Score: ns per frame.
 */
public class SwitchBench extends NanosPerOp {
    static final int BATCH = 32, RING = 256, BUFFER = 2048;
    static final long MAC_A = 0x52_54_00_00_00_0AL, MAC_B = 0x52_54_00_00_00_0BL;

    @Param({"64", "1518"})
    public int frameSize;

    private GuestRing ring;
    private L2Switch sw;
    private L2Switch.SwitchPort portA;
    private NetDevice deviceA;
    private QueueHandler rxB;
    private VirtQueue qB;
    private MemorySegment frame;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        sw = new L2Switch();
        portA = sw.newPort();
        L2Switch.SwitchPort portB = sw.newPort();
        deviceA = new NetDevice(portA, 1, MAC_A, 1500);
        NetDevice deviceB = new NetDevice(portB, 1, MAC_B, 1500);
        deviceB.featuresAcked(1L << 32); // VERSION_1, no mergeable buffers
        ring = new GuestRing(RING, 4 << 20);
        ring.receiveBuffers(BUFFER);
        qB = ring.queue;
        rxB = deviceB.handler(0);
        rxB.started(qB);
        frame = Arena.ofAuto().allocate(frameSize, 64);
        // B announces itself (a broadcast from B floods to A, whose NIC is not running), so the
        // switch knows where MAC_B lives.
        MemorySegment hello = MemorySegment.ofArray(Frames.udp(MAC_B, Frames.BROADCAST, 64));
        portB.onFrame(deviceB.nic(), 0, hello, 0, hello.byteSize());
        MemorySegment.copy(MemorySegment.ofArray(Frames.udp(MAC_A, MAC_B, frameSize)), 0, frame, 0, frameSize);
        if (sw.lookup(MAC_B) != portB.id()) {
            throw new IllegalStateException("switch did not learn B");
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (deviceA.nic().counters(0).rxDropped > 1) {
            throw new IllegalStateException("frames flooded to A: " + deviceA.nic().counters(0));
        }
        ring.close();
    }

    @Benchmark
    public int lookup() {
        return sw.lookup(MAC_B);
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public int forward() {
        for (int i = 0; i < BATCH; i++) {
            portA.onFrame(deviceA.nic(), 0, frame, 0, frameSize);
        }
        ring.makeAvailable(BATCH);
        return rxB.process(qB, 64);
    }
}
