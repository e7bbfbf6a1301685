package io.jvhost.perf.jmh;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.core.ring.DescriptorChain;
import io.jvhost.core.ring.VirtQueue;


import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.TearDown;

/**
 * The poller's inner loop on a ring of N chains in memfd guest memory: {@code next()} (read the
 * avail slot, walk and validate every descriptor, translate every buffer), {@code complete()}, and
 * one {@code publish()} per batch of 64, the poller's budget. Score: ns per chain.
 *
 * <ul>
 * <li>{@code direct-1}: one 1514-byte readable buffer (a net transmit without header split);</li>
 * <li>{@code direct-3}: header, 4 KiB data, status byte (a virtio-blk request);</li>
 * <li>{@code indirect-3}: the same three buffers through an indirect table.</li>
 * </ul>
 */
public class VirtQueueBench extends NanosPerOp {
    static final int BATCH = 64;

    @Param({"direct-1", "direct-3", "indirect-3"})
    public String layout;

    @Param({"256"})
    public int queueSize;

    private GuestRing ring;
    private VirtQueue q;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        ring = new GuestRing(queueSize, 16 << 20);
        DriverQueue d = ring.driver;
        int perChain = layout.equals("direct-3") ? 3 : 1;
        int chains = queueSize / perChain;
        int[] heads = new int[chains];
        for (int c = 0; c < chains; c++) {
            int head = c * perChain;
            heads[c] = head;
            switch (layout) {
                case "direct-1" -> d.writeDescriptor(head, ring.buffer(1514), 1514, 0, 0);
                case "direct-3" -> {
                    d.writeDescriptor(head, ring.buffer(16), 16, DriverQueue.F_NEXT, head + 1);
                    d.writeDescriptor(head + 1, ring.buffer(4096), 4096, DriverQueue.F_NEXT | DriverQueue.F_WRITE, head + 2);
                    d.writeDescriptor(head + 2, ring.buffer(1), 1, DriverQueue.F_WRITE, 0);
                }
                case "indirect-3" -> {
                    long table = ring.buffer(48);
                    d.writeIndirect(table, 0, ring.buffer(16), 16, DriverQueue.F_NEXT, 1);
                    d.writeIndirect(table, 1, ring.buffer(4096), 4096, DriverQueue.F_NEXT | DriverQueue.F_WRITE, 2);
                    d.writeIndirect(table, 2, ring.buffer(1), 1, DriverQueue.F_WRITE, 0);
                    d.writeDescriptor(head, table, 48, DriverQueue.F_INDIRECT, 0);
                }
                default -> throw new IllegalArgumentException(layout);
            }
        }
        ring.fillAvail(heads);
        ring.configure();
        q = ring.queue;
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (q.counters().chainsRejected() != 0 || q.isBroken()) {
            throw new IllegalStateException("benchmark ring refused chains: " + q);
        }
        ring.close();
    }

    /** Walk, complete and publish a batch of 64 chains, as a QueueHandler does. */
    @Benchmark
    @OperationsPerInvocation(BATCH)
    public long walkCompletePublish() {
        ring.makeAvailable(BATCH);
        long bytes = 0;
        for (int i = 0; i < BATCH; i++) {
            DescriptorChain c = q.next();
            bytes += c.readableLength();
            q.complete(c, c.writableLength());
        }
        q.publish();
        return bytes;
    }
}
