package io.jvhost.core.transport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;
import io.jvhost.testkit.Await;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.Footprint;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserClient;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Client mode (the backend connects to a frontend that listens, as with QEMU's {@code server=on})
 * when the connection drops while the frontend lives on: the backend connects again, with
 * back-off while nobody listens or every connection is closed at once, and serves the new session
 * as a fresh one, holding nothing of the old.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class ClientReconnectTest {
    private static final Logger LOG = LoggerFactory.getLogger(ClientReconnectTest.class);
    static final int DROPS = 20;

    private Path dir;
    private Path socket;
    private TestDevice device;
    private ControlLoop loop;
    private Backend backend;
    private VhostUserClient client;

    @BeforeEach
    void startBackend() throws IOException {
        dir = Files.createTempDirectory("jvhost-client");
        socket = dir.resolve("frontend.sock");
        device = TestDevice.withQueues(2).build();
        loop = new ControlLoop();
        backend = new Backend("client", device, BackendOptions.DEFAULT, loop);
        backend.start();
    }

    @AfterEach
    void stopBackend() throws IOException {
        if (client != null) {
            client.close();
        }
        backend.close();
        loop.close();
        Files.deleteIfExists(socket);
        Files.deleteIfExists(dir);
    }

    /** The backend's next connection to {@code listener}, as a frontend with bounded replies. */
    private static Frontend accept(Fd listener, Duration timeout) {
        Fd[] accepted = new Fd[1];
        Await.until("the backend connected to the listening frontend", () -> {
            try {
                return (accepted[0] = UnixSockets.accept(listener)) != null;
            } catch (NativeException e) {
                throw new IllegalStateException(e);
            }
        }, timeout);
        return Frontend.over(accepted[0]).replyTimeout(BackendFixture.REPLY_TIMEOUT);
    }

    /** A QEMU-like session on {@code f} with traffic on both queues; leaves requests in the rings. */
    private static void runSession(Frontend f, GuestRam ram, DriverQueue q0, DriverQueue q1, int seed) throws IOException {
        f.startLikeQemu(f.handshakeLikeQemu(2), ram, q0, q1);
        Traffic.echo(q0, 4, seed);
        Traffic.echo(q1, 4, seed + 4);
        q0.post(Traffic.request(ram, Traffic.pattern(100, seed)).buffers());
    }

    @Test
    void shouldReconnectAndServeAFreshSessionEachTimeTheListeningFrontendDropsTheConnection() throws IOException {
        try (Fd listener = UnixSockets.listen(socket, 4)) {
            client = VhostUserClient.connect(socket, backend, loop);
            Map<Integer, String> beforeFds = null;
            Footprint before = null;
            long t0 = System.nanoTime();
            for (int drop = 0; drop <= DROPS; drop++) {
                try (Frontend f = accept(listener, Await.DEFAULT)) {
                    if (drop == 1) {
                        // Counted from the second connection on, after a whole session warmed everything
                        // up and ended, at a point the end repeats: one idle connection, nothing mapped.
                        f.getFeatures();
                        Await.until("first session ended", () -> device.resets() == 1);
                        beforeFds = OpenFds.snapshot();
                        before = Footprint.now();
                        LOG.info("client reconnects: before {} drops: {}", DROPS, before);
                    }
                    try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q0 = new DriverQueue(ram, 0, 64);
                         DriverQueue q1 = new DriverQueue(ram, 1, 64)) {
                        runSession(f, ram, q0, q1, drop * 16);
                    }
                    // the frontend drops the connection here, mid-session, and keeps listening
                }
            }
            try (Frontend f = accept(listener, Await.DEFAULT)) {
                assertEquals(TestDevice.DEVICE_FEATURE, f.getFeatures() & TestDevice.DEVICE_FEATURE, "served again");
                Await.until("every dropped session ended", () -> device.resets() == DROPS + 1);
                Footprint after = Footprint.awaitReturnTo(before, beforeFds, Duration.ofSeconds(10));
                LOG.info("client reconnects: after {} drops ({} connections, {} ms): {}", DROPS, client.connections(),
                        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0), after);
            }
            assertTrue(client.connections() >= DROPS + 2, "connected again after each drop: " + client.connections());
        }
    }

    @Test
    void shouldReconnectAndServeAFreshSessionWhenTheBackendIsToldToDisconnect() throws IOException {
        try (Fd listener = UnixSockets.listen(socket, 4); GuestRam ram = new GuestRam(1 << 20)) {
            client = VhostUserClient.connect(socket, backend, loop);
            try (DriverQueue q0 = new DriverQueue(ram, 0, 64); DriverQueue q1 = new DriverQueue(ram, 1, 64);
                 Frontend f = accept(listener, Await.DEFAULT)) {
                runSession(f, ram, q0, q1, 0);
                assertTrue(client.disconnect("test"), "a connection to drop");
                assertTrue(f.isClosedByBackend(5000), "the frontend saw the connection close");
            }
            try (DriverQueue q0 = new DriverQueue(ram, 0, 64); DriverQueue q1 = new DriverQueue(ram, 1, 64);
                 Frontend f = accept(listener, Await.DEFAULT)) {
                runSession(f, ram, q0, q1, 100);
                assertEquals(2, client.connections());
                assertEquals(1, device.resets(), "the dropped session was reset");
            }
        }
    }

    @Test
    void shouldBackOffWhileNobodyListensAndConnectOnceAFrontendDoes() throws IOException {
        client = VhostUserClient.connect(socket, backend, loop);
        assertTrue(!Await.holdsWithin(() -> client.connections() > 0, Duration.ofMillis(500)), "nobody listens yet");
        try (Fd listener = UnixSockets.listen(socket, 4);
             Frontend f = accept(listener, Duration.ofSeconds(5))) { // at most one full back-off step
            assertEquals(TestDevice.DEVICE_FEATURE, f.getFeatures() & TestDevice.DEVICE_FEATURE);
            assertEquals(1, client.connections());
        }
    }

    @Test
    void shouldBackOffWhenEveryConnectionIsClosedBeforeAnyMessage() throws IOException {
        try (Fd listener = UnixSockets.listen(socket, 16)) {
            client = VhostUserClient.connect(socket, backend, loop);
            accept(listener, Await.DEFAULT).close();
            long start = System.nanoTime();
            int accepted = 1;
            // A frontend that hangs up at once, for two seconds: without back-off that is ~40 reconnects.
            while (System.nanoTime() - start < TimeUnit.SECONDS.toNanos(2)) {
                Fd fd = UnixSockets.accept(listener);
                if (fd == null) {
                    Thread.onSpinWait();
                    continue;
                }
                fd.close();
                accepted++;
            }
            LOG.info("client reconnects: {} connections to a frontend that closed each at once, in 2 s", accepted);
            assertTrue(accepted <= 8, "backed off: " + accepted + " connections in 2 s");
            try (Frontend f = accept(listener, Duration.ofSeconds(5))) {
                assertEquals(TestDevice.DEVICE_FEATURE, f.getFeatures() & TestDevice.DEVICE_FEATURE, "still served");
            }
        }
    }

    @Test
    void shouldKeepTheControlThreadServingWhileTheFrontendsBacklogIsFull() throws IOException {
        try (Fd listener = UnixSockets.listen(socket, 0); Fd queued = UnixSockets.connect(socket, true)) {
            // The one pending connection a backlog of 0 holds is taken: a blocking connect would now wait.
            client = VhostUserClient.connect(socket, backend, loop);
            java.util.concurrent.CompletableFuture<Void> ran = new java.util.concurrent.CompletableFuture<>();
            loop.schedule(() -> ran.complete(null), 200);
            Await.until("the control thread runs other work while the backend waits for room",
                    ran::isDone, Duration.ofSeconds(5));
            UnixSockets.accept(listener).close(); // room again: the backend's next attempt gets in
            try (Frontend f = accept(listener, Duration.ofSeconds(5))) {
                assertEquals(TestDevice.DEVICE_FEATURE, f.getFeatures() & TestDevice.DEVICE_FEATURE, "served");
            }
        }
    }
}
