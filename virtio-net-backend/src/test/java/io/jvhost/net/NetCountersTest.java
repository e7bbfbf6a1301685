package io.jvhost.net;

import io.jvhost.testkit.frontend.DriverQueue.Used;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Counters with more than one writer: {@code rxDropped} counts drops on the pair's poller (no room
 * in the guest's buffer) and on every thread that injects (frame too big, queue or pool full), as
 * an L2 switch's other ports do from their own pollers. None may be lost.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NetCountersTest {
    private ScriptedPort port;
    private NetRig rig;

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
        if (port != null) {
            port.close();
        }
    }

    @Test
    void shouldCountEveryDroppedFrameWhenSeveralThreadsInjectWhileThePollerDrops() throws Exception {
        port = new ScriptedPort(1);
        rig = NetRig.serve(port, 1).start(MODERN);
        int small = 200;
        rig.postRx(0, small, 16); // too small for a header and a frame: the poller drops into each
        int threads = 4, drops = 1_000_000;
        MemorySegment tooBig = MemorySegment.ofArray(new byte[rig.device.nic().maxFrame() + 65536]);
        CyclicBarrier start = new CyclicBarrier(threads + 1);
        Thread[] injectors = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            injectors[t] = Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
                for (int i = 0; i < drops; i++) {
                    rig.device.nic().inject(0, tooBig, 0, tooBig.byteSize());
                }
            });
        }

        start.await();
        for (int i = 0; i < small; i++) {
            assertTrue(port.inject(0, frame(60, i)), "frame " + i + " queued");
        }
        for (int i = 0; i < small; i++) {
            assertEquals(0, rig.awaitUsed(0).length(), "a receive chain too small, given back empty");
        }
        for (Thread t : injectors) {
            t.join();
        }

        NetCounters c = rig.counters(0);
        assertEquals((long) threads * drops + small, c.rxDropped, "drops by " + threads + " injectors and the poller");
        assertEquals(0, c.rxFrames);
    }
}
