package io.jvhost.cli;

import io.jvhost.testkit.NbdServer;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import com.fasterxml.jackson.databind.JsonNode;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Fault isolation with real parts: one {@code jvhost serve} process with three devices, a real
 * QEMU 7.2 guest on two of them. The disk's store is a qemu-nbd export that is killed (an I/O
 * error once {@code nbd-timeout} passes); a second disk's socket is fed garbage by a frontend of
 * our own. Both are stopped and reported alone, while the guest keeps reading its rng, on a process
 * that stays whole.
 */
@Tag("qemu")
@Timeout(value = 5, unit = TimeUnit.MINUTES)
class ServeFaultIsolationGuestTest {
    @TempDir
    Path dir;

    @Test
    void shouldStopTheDiskWhoseNbdServerDiedAndTheOneFedGarbageWhileTheGuestsRngKeepsServing() throws Exception {
        QemuTests.requireQemu();
        NbdServer.require();
        Path image = dir.resolve("disk.img"), nbdSocket = dir.resolve("nbd.sock"), control = dir.resolve("control.sock");
        try (var f = new java.io.RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(16L << 20);
        }
        Path config = dir.resolve("serve.yaml");
        Files.writeString(config, "control: " + control + "\n"
                + "devices:\n"
                + "  - {type: rng, name: rng, socket: " + dir.resolve("rng.sock") + "}\n"
                + "  - {type: blk, name: store, socket: " + dir.resolve("store.sock") + ", nbd: \"nbd+unix:///disk?socket="
                + nbdSocket + "\", nbd-timeout: 2}\n"
                + "  - {type: blk, name: garbage, socket: " + dir.resolve("garbage.sock") + ", ram: 1M}\n");
        List<CliProcess> all = new ArrayList<>();
        try (NbdServer nbd = NbdServer.qemuNbdUnix(image, nbdSocket, "disk")) {
            CliProcess serve = CliProcess.start(dir, List.of(), Map.of(), "serve", "--config", config.toString());
            all.add(serve);
            serve.await(CliProcess.READY, Duration.ofSeconds(30));
            List<String> args = new ArrayList<>(QemuConfigs.deviceArgs("rng-qemu.sh", dir.resolve("rng.sock").toString()));
            args.addAll(QemuConfigs.deviceArgs("blk-qemu.sh", dir.resolve("store.sock").toString(), "1"));
            try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).cpus(1).memoryMib(256).extraArgs(args)
                    .logFile(QemuTests.logFile(getClass())).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                assertEquals(0, guest.exec("dd if=/dev/urandom of=/dev/vda bs=64k count=16 oflag=direct 2>/dev/null"
                        + " && dd if=/dev/hwrng of=/dev/null bs=64 count=4 2>/dev/null", Duration.ofMinutes(1)).exitStatus(),
                        "the disk and the rng serve");

                nbd.kill();
                // The write waits for the store (up to nbd-timeout), then fails; in the background, as a stopped
                // device's I/O may never complete in the guest.
                guest.exec("(dd if=/dev/urandom of=/dev/vda bs=4k count=1 seek=1000 oflag=direct 2>/tmp/dd.err; echo $? > /tmp/dd.rc) &",
                        Duration.ofMinutes(1));
                try (Frontend garbage = Frontend.connect(dir.resolve("garbage.sock"), 10_000)) {
                    garbage.sendRaw(new byte[] {1, 0, 0, 0, (byte) 0xFF, (byte) 0xFF, 0, 0, 8, 0, 0, 0, 'n', 'o', 'i', 's', 'e', '!', '!', '!'});
                }
                Map<String, JsonNode> devices = null;
                for (long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30); System.nanoTime() < deadline; Thread.sleep(200)) {
                    devices = list(control);
                    if (state(devices, "store").equals("failed") && state(devices, "garbage").equals("failed")) {
                        break;
                    }
                }
                assertEquals("failed", state(devices, "store"), String.valueOf(devices));
                assertEquals("failed", state(devices, "garbage"), String.valueOf(devices));
                assertEquals("running", state(devices, "rng"), String.valueOf(devices));
                assertTrue(devices.get("store").path("reason").asText().contains("store failed"), String.valueOf(devices));
                assertTrue(devices.get("garbage").path("reason").asText().contains("frontend broke the vhost-user protocol"),
                        String.valueOf(devices));
                assertFalse(Files.exists(dir.resolve("store.sock")) || Files.exists(dir.resolve("garbage.sock")),
                        "a stopped device's socket goes");

                for (int i = 0; i < 10; i++) {
                    assertEquals(0, guest.exec("dd if=/dev/hwrng of=/dev/null bs=256 count=2 2>/dev/null", Duration.ofMinutes(1)).exitStatus(),
                            "the guest's rng keeps serving, read " + i);
                }
                assertTrue(serve.process.isAlive(), serve.output());
                guest.quit(Duration.ofSeconds(60));
            }
            assertEquals(0, serve.terminate(), serve.output());
        } finally {
            all.forEach(CliProcess::close);
        }
    }

    /** The control socket's list, by device name. */
    private static Map<String, JsonNode> list(Path control) throws Exception {
        try (ControlClient c = new ControlClient(control)) {
            JsonNode reply = c.send("list");
            assertTrue(reply.path("ok").asBoolean(), reply.toString());
            Map<String, JsonNode> byName = new java.util.TreeMap<>();
            for (JsonNode d : reply.path("devices")) {
                byName.put(d.path("name").asText(), d);
            }
            return byName;
        }
    }

    private static String state(Map<String, JsonNode> devices, String name) {
        return devices == null || !devices.containsKey(name) ? "missing" : devices.get(name).path("state").asText();
    }
}
