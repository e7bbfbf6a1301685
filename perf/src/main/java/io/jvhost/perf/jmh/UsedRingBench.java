package io.jvhost.perf.jmh;

import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.ring.VirtQueue;


import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.TearDown;

/**
 * Used-ring publication: {@code batch} used elements written with {@code complete(head, len)} and
 * made visible by one {@code publish()} (release store, full fence, notification check). Score: ns
 * per publish (divide by the batch for per-element cost). With {@code notify=true} the driver asks
 * for interrupts and every publish writes a real call eventfd (a syscall); with {@code false} it
 * set NO_INTERRUPT and publish only counts a suppressed notification.
 */
public class UsedRingBench extends NanosPerOp {
    @Param({"1", "64"})
    public int batch;

    @Param({"false", "true"})
    public boolean notify;

    private GuestRing ring;
    private VirtQueue q;
    private Fd call;
    private int head;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        ring = new GuestRing(256, 1 << 20).configure();
        q = ring.queue;
        ring.driver.setNoInterrupt(!notify);
        call = EventFd.create();
        q.callFd(notify ? call.get() : -1);
    }

    /** Drains the call eventfd between iterations so its counter never saturates. */
    @Setup(Level.Iteration)
    public void drain() {
        LibC.eventfdDrain(call.get());
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        call.close();
        ring.close();
    }

    @Benchmark
    public int completeAndPublish() {
        int h = head;
        for (int i = 0; i < batch; i++) {
            q.complete(h, 64);
            h = (h + 1) & 255;
        }
        head = h;
        q.publish();
        return h;
    }
}
