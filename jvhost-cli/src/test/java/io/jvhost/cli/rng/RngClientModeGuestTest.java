package io.jvhost.cli.rng;

import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.testkit.QemuTests;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserClient;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Client mode against QEMU as the socket server ({@code server=on}): the backend connects, serves
 * the guest, and connects again to the next QEMU that listens on the same path. Busy-poll mode,
 * so both idle modes meet a real guest.
 */
@Tag("qemu")
@Timeout(value = 10, unit = TimeUnit.MINUTES)
class RngClientModeGuestTest {
    private static final Duration BOOT = Duration.ofMinutes(3);

    @Test
    void shouldConnectToQemuAndReconnectWhenQemuIsRestarted() throws Exception {
        QemuTests.requireQemu();
        Path socket = Files.createTempDirectory("jvhost-rng-client").resolve("qemu.sock");
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("rng", new RngDevice(), new BackendOptions(IdleMode.BUSY, null), loop)) {
            backend.start();
            VhostUserClient client = VhostUserClient.connect(socket, backend, loop);
            try {
                for (int run = 1; run <= 2; run++) {
                    try (QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare())
                            .extraArgs("-chardev", "socket,id=rng0,path=" + socket + ",server=on,wait=on",
                                    "-device", "vhost-user-rng-pci,chardev=rng0")
                            .logFile(QemuTests.logFile(RngClientModeGuestTest.class)).build()) {
                        guest.start();
                        guest.awaitReady(BOOT);
                        QemuGuest.Result r = guest.exec("head -c 16384 /dev/hwrng | wc -c", Duration.ofMinutes(2));
                        assertEquals(new QemuGuest.Result("16384\n", 0), r);
                        assertEquals(run, client.connections());
                        guest.quit(Duration.ofSeconds(60));
                    }
                }
                assertTrue(backend.queue(0).counters().bytesWritten >= 2 * 16384);
            } finally {
                client.close();
            }
        }
    }
}
