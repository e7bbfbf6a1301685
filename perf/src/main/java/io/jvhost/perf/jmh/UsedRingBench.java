package io.jvhost.perf.jmh;

import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.ring.VirtQueue;

import java.util.concurrent.TimeUnit;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Used-ring publication: {@code batch} used elements written with {@code complete(head, len)} and
 * made visible by one {@code publish()} (release store, full fence, notification check). Score: ns
 * per publish (divide by the batch for per-element cost). With {@code notify=true} the driver asks
 * for interrupts and every publish writes a real call eventfd (a syscall); with {@code false} it
 * set NO_INTERRUPT and publish only counts a suppressed notification.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class UsedRingBench {
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
