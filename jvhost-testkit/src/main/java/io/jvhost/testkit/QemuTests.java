package io.jvhost.testkit;

import io.jvhost.testkit.guest.GuestImage;

import static org.junit.jupiter.api.Assertions.fail;

import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Assumptions;

/**
 * Shared guard for tests tagged {@code qemu}: they need QEMU, a kernel and a static busybox. On
 * CI (environment variable {@code CI} set) a missing package fails the test, since
 * {@code .ci/run} installs them; locally the test is skipped with a banner nobody can miss.
 */
public final class QemuTests {

    private QemuTests() {
    }

    /** Call first in a QEMU test or its {@code @BeforeAll}; returns only if a guest can boot. */
    public static void requireQemu() {
        List<String> missing = GuestImage.missingHostPackages();
        if (missing.isEmpty()) {
            return;
        }
        String caller = StackWalker.getInstance(StackWalker.Option.RETAIN_CLASS_REFERENCE)
                .getCallerClass().getSimpleName();
        HostPackages.missing("QEMU guest tests in " + caller, missing, "apt-get install " + String.join(" ", missing));
    }

    /**
     * Returns only if {@code /usr/bin/<command>} exists (for the host side and, when present, the
     * guest image: see {@link GuestImage#EXTRA_PROGRAMS}); fails on CI, skips loudly elsewhere.
     */
    public static void requireCommand(String command, String debianPackage) {
        if (java.nio.file.Files.isExecutable(Path.of("/usr/bin", command))) {
            return;
        }
        String message = command + " is missing; install: apt-get install " + debianPackage;
        if (HostPackages.onCi()) {
            fail("cannot run on CI: " + message);
        }
        System.err.println("\n#  SKIPPED: " + message + "\n");
        Assumptions.abort(message);
    }

    /** Where a test class appends its guest console: {@code target/qemu-logs/<class>.log}. */
    public static Path logFile(Class<?> testClass) {
        return Path.of("target", "qemu-logs", testClass.getSimpleName() + ".log");
    }
}
