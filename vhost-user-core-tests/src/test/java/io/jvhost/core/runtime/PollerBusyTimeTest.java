package io.jvhost.core.runtime;

import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.testkit.Traffic.Request;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A busy-polling backend's poller spends its time idle until the driver posts requests, and the
 * duty cycles that serve them count as busy: what {@code bench net}'s busy ns per packet and a
 * user asking whether the poller waits for its peer read ({@link Backend#pollerLoads}).
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class PollerBusyTimeTest {
    @Test
    void shouldCountOnlyTheCyclesThatServedRequestsAsBusy() throws Exception {
        TestDevice device = TestDevice.withQueues(1).build();
        try (BackendFixture fx = BackendFixture.start(device, new BackendOptions(IdleMode.BUSY, new int[][] {{0}}));
             GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connect()) {
            PollerLoad load = fx.backend().pollerLoads().getFirst();
            f.startLikeQemu(f.handshakeLikeQemu(1), ram, q);
            Thread.sleep(50);
            assertEquals(0, load.busyNanos(), "no request yet: nothing was busy");
            assertTrue(load.idleNanos() >= 40_000_000L, "the poller spun idle for the 50 ms: " + load.idleNanos());
            for (int i = 0; i < 200; i++) {
                Request r = Traffic.request(ram, Traffic.pattern(64, i));
                int head = q.post(r.buffers());
                r.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), head);
            }
            Thread.sleep(20); // the cycle that published the last completion has ended
            long busy = load.busyNanos();
            assertTrue(busy > 0, "the cycles that echoed 200 requests were busy");
            Thread.sleep(20);
            assertEquals(busy, load.busyNanos(), "idle again once the requests were served");
            assertEquals(1, fx.backend().pollerLoads().size(), "one queue set, one poller");
        }
    }
}
