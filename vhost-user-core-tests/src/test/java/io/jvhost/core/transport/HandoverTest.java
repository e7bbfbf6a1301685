package io.jvhost.core.transport;

import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.sys.Fd;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import static io.jvhost.core.device.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Live upgrade with the frontend simulator, where every ring position can be checked: a backend
 * hands its frontend connection to a successor (here in the same JVM, on its own control loop and
 * pollers, exactly as another process would get it) while requests are on the ring and one is held
 * in the old backend's handler. The frontend keeps the very same connection; every request is
 * answered once, the ones before the upgrade by the old device and the rest by the new one, on
 * split and packed rings, with the inflight region carried over.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class HandoverTest {
    private static final int QUEUE_SIZE = 64;

    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldHandTheConnectionOverAtARequestBoundaryWithEveryRequestAnsweredOnceByOneOfTheTwo(DriverQueue.Layout layout) throws Exception {
        Path socket = dir.resolve("dev.sock"), handover = dir.resolve("dev.handover");
        long inflight = ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD);
        TestDevice oldDevice = TestDevice.withQueues(2).protocolFeatures(inflight).build();
        TestDevice newDevice = TestDevice.withQueues(2).protocolFeatures(inflight).build();
        CountDownLatch handedOver = new CountDownLatch(1);
        try (ControlLoop oldLoop = new ControlLoop(); ControlLoop newLoop = new ControlLoop();
             Backend oldBackend = new Backend("old", oldDevice, BackendOptions.DEFAULT, oldLoop);
             Backend newBackend = new Backend("new", newDevice, BackendOptions.DEFAULT, newLoop)) {
            oldBackend.keepFdsForHandover();
            newBackend.keepFdsForHandover();
            oldBackend.start();
            newBackend.start();
            VhostUserServer oldServer = VhostUserServer.listen(socket, oldBackend, oldLoop);
            try (HandoverOffer offer = Handover.offer(handover, null, () -> List.of(oldServer), oldLoop, Handover.DeviceFds.NONE,
                         handedOver::countDown);
                 GuestRam ram = new GuestRam(4 << 20); DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE, layout);
                 Frontend f = Frontend.connect(socket, 10_000).driverRings(layout, false).replyTimeout(Duration.ofSeconds(10))) {
                long offered = f.handshakeLikeQemu(2);
                assertEquals(0, f.setFeatures(offered & (bit(VirtioFeatures.VERSION_1) | bit(VirtioFeatures.PROTOCOL_FEATURES)
                        | bit(VirtioFeatures.RING_PACKED) | bit(VirtioFeatures.RING_EVENT_IDX))));
                Frontend.Inflight region = f.getInflightFd(2, QUEUE_SIZE); // as QEMU 7.2: after SET_FEATURES, kept by the frontend
                assertEquals(0, f.setMemTable(ram));
                assertEquals(0, f.setVringNum(0, q.size()));
                assertEquals(0, f.setVringBase(0, q.base()));
                assertEquals(0, f.setVringAddr(q));
                assertEquals(0, f.setVringCall(0, q.callFd()));
                assertEquals(0, f.setVringKick(0, q.kickFd()));
                assertEquals(0, f.setVringEnable(0, true));

                Traffic.echo(q, 100, 0); // 100 requests, more than a ring: positions wrap
                // Three more on the ring, the old handler held in the first: the pause waits for it.
                oldDevice.holdProcessing();
                List<Traffic.Request> pending = new ArrayList<>();
                List<Integer> heads = new ArrayList<>();
                for (int i = 0; i < 3; i++) {
                    Traffic.Request r = Traffic.request(ram, Traffic.pattern(100 + i, 1000 + i));
                    pending.add(r);
                    heads.add(q.post(r.buffers()));
                }
                long wait = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
                while (!oldDevice.processingHeld() && System.nanoTime() < wait) {
                    Thread.onSpinWait();
                }
                assertTrue(oldDevice.processingHeld(), "the old handler holds the first of the three");

                CompletableFuture<Fd> taken = CompletableFuture.supplyAsync(() -> {
                    try (HandoverTakeover t = Handover.contact(handover, List.of(socket))) {
                        t.server(socket, newBackend, newLoop, SocketAccess.OWNER_ONLY);
                        return t.complete(newLoop);
                    } catch (java.io.IOException e) {
                        throw new java.io.UncheckedIOException(e);
                    }
                });
                Thread.sleep(200);
                assertFalse(taken.isDone(), "the old backend does not pause in the middle of a request");
                oldDevice.releaseProcessing();
                try (Fd listener = taken.get(20, TimeUnit.SECONDS)) {
                    assertTrue(listener.isOpen(), "the handover socket passes on");
                }
                assertTrue(handedOver.await(10, TimeUnit.SECONDS), "the old backend learns it handed over");
                for (int i = 0; i < 3; i++) {
                    pending.get(i).assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), heads.get(i));
                }

                Traffic.echo(q, 50, 2000); // the same frontend connection, now served by the new backend
                assertNull(q.awaitUsed(Duration.ofMillis(300)), "nothing answered twice");
                int oldSaw = oldDevice.seen(0).size(), newSaw = newDevice.seen(0).size();
                assertEquals(153, oldSaw + newSaw, "each of the 153 requests seen by exactly one backend");
                assertTrue(oldSaw >= 101 && newSaw >= 50, "old " + oldSaw + ", new " + newSaw);
                assertEquals(q.base(), f.getVringBase(0), "the new backend stops where the driver's ring is");
                region.close();
            }
            oldServer.close(); // handed over: leaves the socket file, which is the successor's
            assertTrue(Files.exists(socket), "the socket file stays for the successor");
        }
    }
}
