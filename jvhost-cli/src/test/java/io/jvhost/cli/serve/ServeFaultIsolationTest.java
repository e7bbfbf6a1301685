package io.jvhost.cli.serve;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.BlockRequest;
import io.jvhost.blk.BlockStore;
import io.jvhost.cli.DeviceCommand;
import io.jvhost.cli.DeviceSet;
import io.jvhost.core.metrics.DeviceSnapshot;
import io.jvhost.core.metrics.Sample;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import picocli.CommandLine;
import picocli.CommandLine.Command;

import io.jvhost.testkit.Await;
import io.jvhost.testkit.frontend.Frontend;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Three devices in one serve process: one whose frontend sends garbage, one whose store fails, and
 * an rng whose guest keeps reading (on the same shared poller thread as the first). The first two are stopped and reported alone (state, reason,
 * {@code jvhost_device_failed}, their sockets gone); the rng's I/O goes on throughout.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class ServeFaultIsolationTest {
    @TempDir
    Path dir;

    private DeviceHost host;

    @AfterEach
    void stop() {
        if (host != null) {
            host.close();
        }
    }

    /** A user's store that fails every request: what a disk that went away looks like to the device. */
    static final class FailingStore implements BlockStore {
        @Override
        public long size() {
            return 1 << 20;
        }

        @Override
        public void submit(BlockRequest[] requests, int count) {
            for (int i = 0; i < count; i++) {
                requests[i].complete(BlockRequest.STATUS_IOERR);
            }
        }
    }

    /** A device command of a user's own: a blk device on {@link FailingStore}, with every option serve gives a device. */
    @Command(name = "failing-blk")
    static final class FailingBlkCommand extends DeviceCommand {
        @Override
        public DeviceSet open(Shared shared) {
            BlockStore store = new FailingStore();
            return new DeviceSet(List.of(new BlkDevice(store, 1)), store, () -> { }, null);
        }
    }

    private ServeConfig.DeviceSpec failingBlk(Path socket) {
        FailingBlkCommand command = new FailingBlkCommand();
        new CommandLine(command).parseArgs("--socket", socket.toString());
        return new ServeConfig.DeviceSpec("store", "blk", null, null, command, Map.of());
    }

    private static long failed(DeviceSnapshot d) {
        return d.samples().stream().filter(s -> s.name().equals("jvhost_device_failed")).mapToLong(Sample::value).sum();
    }

    @Test
    void shouldStopTheDeviceOfAGarbageFrontendAndTheOneWithAFailingStoreWhileTheThirdKeepsServing() throws Exception {
        // The rng and the device fed garbage even share a poller thread.
        ServeConfig c = ServeConfig.read("pollers: {shared0: {}}\n"
                + "devices:\n"
                + "  - {type: rng, name: rng, socket: " + dir.resolve("rng.sock") + ", poller: shared0}\n"
                + "  - {type: blk, name: garbage, socket: " + dir.resolve("garbage.sock") + ", ram: 1M, poller: shared0}\n");
        assertEquals(List.of(), c.problems);
        host = new DeviceHost(false, c.pollers.values());
        for (ServeConfig.DeviceSpec d : c.devices) {
            host.add(d, true);
        }
        host.add(failingBlk(dir.resolve("store.sock")), true);

        try (SimulatedGuest rng = SimulatedGuest.start(dir.resolve("rng.sock"))) {
            assertEquals(256, rng.rngRead(256));

            // Garbage: a header with flags no frontend sends, and noise after it.
            try (Frontend garbage = Frontend.connect(dir.resolve("garbage.sock"), 10_000)) {
                garbage.sendRaw(new byte[] {1, 0, 0, 0, (byte) 0xFF, (byte) 0xFF, 0, 0, 8, 0, 0, 0, 'n', 'o', 'i', 's', 'e', '!', '!', '!'});
            }
            // A failing store: the guest's read ends in IOERR, and the device is stopped.
            try (SimulatedGuest store = SimulatedGuest.start(dir.resolve("store.sock"))) {
                assertEquals(1, store.blkReadSector0(), "the guest sees the store's error as IOERR");
            }
            Await.until("both faulty devices stopped", () -> host.get("garbage").state == DeviceHost.State.FAILED
                    && host.get("store").state == DeviceHost.State.FAILED, Duration.ofSeconds(10));

            assertTrue(host.get("garbage").reason.contains("frontend broke the vhost-user protocol"), host.get("garbage").reason);
            assertTrue(host.get("store").reason.contains("store failed (1 I/O error on queue 0)"), host.get("store").reason);
            assertFalse(Files.exists(dir.resolve("garbage.sock")), "a stopped device's socket goes");
            assertFalse(Files.exists(dir.resolve("store.sock")), "a stopped device's socket goes");
            assertEquals(DeviceHost.State.RUNNING, host.get("rng").state);
            for (int i = 0; i < 20; i++) {
                assertEquals(512, rng.rngRead(512), "the rng's guest keeps reading, read " + i);
            }
        }
        Map<String, Long> failedByDevice = new java.util.TreeMap<>();
        double sharedPollerBusySeconds = -1;
        for (DeviceSnapshot d : host.registry().snapshot()) {
            if (d.type().equals("poller")) { // the shared poller's own time, no one device's
                assertEquals("shared-poller-shared0", d.device());
                sharedPollerBusySeconds = d.samples().stream().filter(s -> s.name().equals("jvhost_device_poller_busy_seconds"))
                        .mapToDouble(Sample::exposedValue).sum();
            } else {
                failedByDevice.put(d.device(), failed(d));
            }
        }
        assertEquals(Map.of("garbage", 1L, "rng", 0L, "store", 1L), failedByDevice);
        assertTrue(sharedPollerBusySeconds > 0, "the shared poller that served the rng's reads was busy: " + sharedPollerBusySeconds);
        // A new frontend for the rng is served too: the process and its other devices are whole.
        try (SimulatedGuest again = SimulatedGuest.start(dir.resolve("rng.sock"))) {
            assertEquals(64, again.rngRead(64));
        }
    }

    @Test
    void shouldStopTheDeviceWhoseQueueBreaksAndKeepItsNeighbourServing() throws Exception {
        ServeConfig c = ServeConfig.read("devices:\n"
                + "  - {type: rng, name: broken, socket: " + dir.resolve("broken.sock") + "}\n"
                + "  - {type: rng, name: fine, socket: " + dir.resolve("fine.sock") + "}\n");
        host = new DeviceHost(false, List.of());
        for (ServeConfig.DeviceSpec d : c.devices) {
            host.add(d, true);
        }
        try (SimulatedGuest fine = SimulatedGuest.start(dir.resolve("fine.sock"));
             SimulatedGuest broken = SimulatedGuest.start(dir.resolve("broken.sock"))) {
            broken.queue.setAvailIdx(1000); // 1000 new buffers in a 64-entry ring: corruption
            broken.queue.kick();
            Await.until("the broken device stopped", () -> host.get("broken").state == DeviceHost.State.FAILED,
                    Duration.ofSeconds(10));
            assertTrue(host.get("broken").reason.contains("queue 0 broke (ring corruption"), host.get("broken").reason);
            assertFalse(Files.exists(dir.resolve("broken.sock")));
            assertEquals(128, fine.rngRead(128));
            assertEquals(DeviceHost.State.RUNNING, host.get("fine").state);
        }
    }
}
