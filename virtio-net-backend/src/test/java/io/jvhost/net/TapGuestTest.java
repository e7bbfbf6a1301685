package io.jvhost.net;

import io.jvhost.testkit.HostCommands;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A real QEMU guest on {@code --tap} pings the host's address on that TAP. The TAP is moved into
 * a network namespace of the test's own, so the traffic never leaves this machine's sandbox.
 */
@Tag("qemu")
@Timeout(value = 10, unit = TimeUnit.MINUTES)
class TapGuestTest {
    private static final String NS = "jvhost-tap-test", TAP = "jvtap-t0";


    @Test
    void shouldLetAGuestPingTheHostSideOfItsTapAcrossAReboot() throws Exception {
        QemuTests.requireQemu();
        Path dir = Files.createTempDirectory("jvhost-tap");
        new ProcessBuilder("ip", "netns", "delete", NS).start().waitFor(10, TimeUnit.SECONDS); // a leftover run
        TapPort port = new TapPort(TAP, 1);
        NetDevice device = new NetDevice(port, 1, 0x525400000011L, 1500);
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("tap", device, BackendOptions.DEFAULT, loop)) {
            HostCommands.run("ip", "netns", "add", NS);
            HostCommands.run("ip", "link", "set", TAP, "netns", NS);
            HostCommands.run("ip", "netns", "exec", NS, "ip", "addr", "add", "192.0.2.1/24", "dev", TAP);
            HostCommands.run("ip", "netns", "exec", NS, "ip", "link", "set", TAP, "up");
            backend.start();
            try (VhostUserServer server = VhostUserServer.listen(dir.resolve("tap.sock"), backend, loop);
                 QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare())
                         .extraArgs(QemuConfigs.deviceArgs("net-qemu.sh", server.path().toString(), "52:54:00:00:00:11", "1"))
                         .logFile(QemuTests.logFile(TapGuestTest.class)).build()) {
                guest.start();
                guest.awaitReady(Duration.ofMinutes(3));
                for (int boot = 0; boot < 2; boot++) {
                    if (boot == 1) {
                        guest.reboot(Duration.ofMinutes(3));
                    }
                    assertEquals(0, guest.exec("ip link set eth0 up && ip addr add 192.0.2.2/24 dev eth0",
                            Duration.ofMinutes(1)).exitStatus());
                    QemuGuest.Result ping = guest.exec("ping -c 3 -W 5 192.0.2.1", Duration.ofMinutes(2));
                    assertTrue(ping.output().contains("3 packets received"), ping.output());
                }
                guest.quit(Duration.ofSeconds(60));
            }
            assertTrue(device.nic().counters(0).rxFrames >= 6 && device.nic().counters(0).txFrames >= 6, port.describe());
        } finally {
            new ProcessBuilder(List.of("ip", "netns", "delete", NS)).start().waitFor(10, TimeUnit.SECONDS);
        }
    }
}
