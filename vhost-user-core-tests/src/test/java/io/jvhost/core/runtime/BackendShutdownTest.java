package io.jvhost.core.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;
import io.jvhost.testkit.Await;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserClient;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Shutting a backend down the way the CLI does (endpoint, then backend, then control loop) while
 * a frontend is connected and a queue runs: the queue is stopped on its poller (so a device
 * finishes what it has in flight), the session releases every fd and mapping, and nothing of the
 * backend stays open.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class BackendShutdownTest {
    static final String GUEST_RAM = "/memfd:jvhost-guest-ram";

    /** One whole start-and-shutdown first, so that lazily opened files (jars, /dev/urandom) are open before fds are counted. */
    @BeforeAll
    static void warmUp() throws Exception {
        shutDownWithARunningQueue(IdleMode.EVENT, false);
    }

    /**
     * Starts a backend, runs a queue and shuts the backend down with the frontend still connected;
     * with {@code busy}, the poller is busy in a handler when the session ends and when it is told
     * to stop. Checks the queue was stopped and the session cleaned up.
     */
    private static void shutDownWithARunningQueue(IdleMode mode, boolean busy) throws Exception {
        TestDevice device = TestDevice.withQueues(2).build();
        BackendFixture fx = BackendFixture.start(device, new BackendOptions(mode, null));
        boolean shutDown = false;
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connect()) {
            long ramMappings = OpenFds.mappingsOf(GUEST_RAM);
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
            Traffic.echo(q, 2, 0);

            Thread releaser = null;
            if (busy) {
                device.holdProcessing();
                Await.until("poller busy in the handler", device::processingHeld);
            }
            fx.server().close(); // drops the session: its queue's detach goes to the poller
            if (busy) {
                Thread closing = Thread.currentThread();
                releaser = Thread.ofPlatform().start(() -> {
                    Await.until("backend waiting for its poller to stop", () -> closing.getState() == Thread.State.TIMED_WAITING);
                    device.releaseProcessing();
                });
            }
            fx.backend().close();
            if (releaser != null) {
                releaser.join();
            }
            fx.loop().close();
            shutDown = true;

            assertEquals(1, device.stopped(0), "queue stopped on its poller before the backend went");
            assertEquals(1, device.resets(), "session ended: device reset");
            assertEquals(ramMappings, OpenFds.mappingsOf(GUEST_RAM), "guest RAM unmapped by the backend");
        } finally {
            if (!shutDown) {
                device.releaseProcessing();
                fx.close();
            }
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldStopARunningQueueAndReleaseEverythingWhenShutDown(IdleMode mode) throws Exception {
        Map<Integer, String> before = OpenFds.snapshot();
        shutDownWithARunningQueue(mode, false);
        OpenFds.awaitCount(before, Await.DEFAULT);
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldStopARunningQueueAndReleaseEverythingWhenShutDownUnderABusyPoller(IdleMode mode) throws Exception {
        Map<Integer, String> before = OpenFds.snapshot();
        shutDownWithARunningQueue(mode, true);
        OpenFds.awaitCount(before, Await.DEFAULT);
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldStopARunningQueueAndReleaseEverythingWhenAClientModeBackendShutsDown(IdleMode mode) throws Exception {
        Map<Integer, String> before = OpenFds.snapshot();
        Path dir = Files.createTempDirectory("jvhost-test");
        Path socket = dir.resolve("frontend.sock");
        TestDevice device = TestDevice.withQueues(2).build();
        try (Fd listener = UnixSockets.listen(socket, 1); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, 64)) {
            long ramMappings = OpenFds.mappingsOf(GUEST_RAM);
            ControlLoop loop = new ControlLoop();
            Backend backend = new Backend("client", device, new BackendOptions(mode, null), loop);
            backend.start();
            VhostUserClient client = VhostUserClient.connect(socket, backend, loop);
            Fd[] accepted = new Fd[1];
            Await.until("backend connected to the listening frontend", () -> {
                try {
                    return (accepted[0] = UnixSockets.accept(listener)) != null;
                } catch (NativeException e) {
                    throw new IllegalStateException(e);
                }
            });
            try (Frontend f = Frontend.over(accepted[0]).replyTimeout(BackendFixture.REPLY_TIMEOUT)) {
                f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
                Traffic.echo(q, 2, 0);
                client.close();
                backend.close();
                loop.close();
                assertEquals(1, device.stopped(0), "queue stopped on its poller before the backend went");
                assertEquals(1, device.resets(), "session ended: device reset");
                assertEquals(ramMappings, OpenFds.mappingsOf(GUEST_RAM), "guest RAM unmapped by the backend");
            }
        } finally {
            Files.deleteIfExists(socket);
            Files.deleteIfExists(dir);
        }
        OpenFds.awaitCount(before, Await.DEFAULT);
    }
}
