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
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One poller thread serving the queues of two backends (each on its own control loop here): each
 * backend's requests are processed on the shared thread and acknowledged to its own control
 * thread; closing one backend frees its slots and leaves the other served.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class SharedPollerTest {
    /** Starts queue 0..n-1 of a backend like QEMU and echoes {@code count} requests on each. */
    private static void echo(BackendFixture fx, Frontend f, GuestRam ram, DriverQueue... queues) throws Exception {
        f.startLikeQemu(f.handshakeLikeQemu(queues.length), ram, queues);
        for (DriverQueue q : queues) {
            for (int i = 0; i < 3; i++) {
                Request r = Traffic.request(ram, Traffic.pattern(32, 10 * q.index() + i));
                int head = q.post(r.buffers());
                r.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), head);
            }
        }
    }

    @Test
    void shouldServeTwoBackendsQueuesOnOneSharedPollerAndFreeTheSlotsOfOneThatCloses() throws Exception {
        Poller shared = new Poller("shared-0", IdleMode.EVENT, 3, -1);
        shared.start();
        try {
            TestDevice a = TestDevice.withQueues(2).build(), b = TestDevice.withQueues(1).build();
            try (BackendFixture fb = BackendFixture.start(b, BackendOptions.on(shared));
                 GuestRam ramB = new GuestRam(1 << 20); DriverQueue b0 = new DriverQueue(ramB, 0, 64);
                 Frontend fB = fb.connect()) {
                try (BackendFixture fa = BackendFixture.start(a, BackendOptions.on(shared));
                     GuestRam ramA = new GuestRam(1 << 20); DriverQueue a0 = new DriverQueue(ramA, 0, 64);
                     DriverQueue a1 = new DriverQueue(ramA, 1, 64); Frontend fA = fa.connect()) {
                    assertSame(shared, fa.backend().poller(1));
                    assertEquals(1, fa.backend().pollerCount());
                    assertThrows(IllegalArgumentException.class, () -> BackendFixture.start(TestDevice.withQueues(1).build(),
                            BackendOptions.on(shared)), "three slots, all taken");
                    echo(fa, fA, ramA, a0, a1);
                    echo(fb, fB, ramB, b0);
                    for (int q = 0; q < 2; q++) {
                        assertTrue(a.seen(q).stream().allMatch(s -> s.thread().equals("shared-0")), "a's queue " + q);
                    }
                    assertTrue(b.seen(0).stream().allMatch(s -> s.thread().equals("shared-0")));
                }
                // a is gone: its two slots are free for another backend, and b is still served.
                TestDevice c = TestDevice.withQueues(2).build();
                try (BackendFixture fc = BackendFixture.start(c, BackendOptions.on(shared));
                     GuestRam ramC = new GuestRam(1 << 20); DriverQueue c0 = new DriverQueue(ramC, 0, 64);
                     DriverQueue c1 = new DriverQueue(ramC, 1, 64); Frontend fC = fc.connect()) {
                    echo(fc, fC, ramC, c0, c1);
                }
                Request r = Traffic.request(ramB, Traffic.pattern(32, 99));
                int head = b0.post(r.buffers());
                r.assertEchoed(ramB, b0.awaitUsed(Traffic.USED_TIMEOUT), head);
                assertEquals(0, fb.backend().pollerFailures());
            }
        } finally {
            shared.close();
        }
    }
}
