package io.jvhost.testkit.guest;

import io.jvhost.testkit.QemuTests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.guest.QemuGuest.Result;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer.OrderAnnotation;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.Timeout;

/** Boots one plain guest (no extra devices) and walks it through commands, a reboot and quit. */
@Tag("qemu")
@Timeout(value = 5, unit = TimeUnit.MINUTES)
@TestMethodOrder(OrderAnnotation.class)
class QemuGuestTest {

    // TCG on a busy two-core CI machine is slow; these only bound a broken guest.
    private static final Duration BOOT = Duration.ofMinutes(3);
    private static final Duration COMMAND = Duration.ofSeconds(60);

    private static GuestImage image;
    private static QemuGuest guest;

    @BeforeAll
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    static void bootGuest() throws Exception {
        QemuTests.requireQemu();
        image = GuestImage.prepare();
        guest = QemuGuest.builder().image(image).logFile(QemuTests.logFile(QemuGuestTest.class)).build();
        guest.start();
        guest.awaitReady(BOOT);
    }

    @AfterAll
    static void closeGuest() {
        if (guest != null) {
            guest.close();
        }
    }

    @Test
    @Order(1)
    void shouldPrintTheHostKernelReleaseAndEchoedText() {
        assertEquals(new Result(image.kernelVersion() + "\n", 0), guest.exec("uname -r", COMMAND));
        assertEquals(new Result("hello\n", 0), guest.exec("echo hello", COMMAND));
    }

    @Test
    @Order(2)
    void shouldReturnTheExitStatusAndStderrOfAFailingCommand() {
        Result missing = guest.exec("ls /no/such/file", COMMAND);
        assertNotEquals(0, missing.exitStatus());
        assertTrue(missing.output().contains("/no/such/file"), missing.output());
        assertEquals(new Result("oops\n", 3), guest.exec("echo oops >&2; exit 3", COMMAND));
    }

    @Test
    @Order(3)
    void shouldFrameOutputWithoutFinalNewlineAndLongOutput() {
        assertEquals(new Result("no newline", 0), guest.exec("printf 'no newline'", COMMAND));
        assertEquals(new Result("", 0), guest.exec("true", COMMAND));
        Result seq = guest.exec("seq 1 5000", COMMAND);
        assertEquals(0, seq.exitStatus());
        assertEquals(5000, seq.output().lines().count());
        assertTrue(seq.output().endsWith("\n4999\n5000\n"));
    }

    @Test
    @Order(4)
    void shouldRunCommandsAgainAfterAReboot() {
        guest.reboot(BOOT);
        assertEquals(new Result("back\n", 0), guest.exec("echo back", COMMAND));
        assertTrue(guest.monitor("info status").contains("running"));
    }

    @Test
    @Order(5)
    void shouldQuitThroughTheMonitor() {
        guest.quit(Duration.ofSeconds(30));
        assertFalse(guest.isRunning());
        assertTrue(guest.consoleLog().contains(QemuGuest.READY));
    }
}
