package io.jvhost.testkit;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.List;
import org.junit.jupiter.api.Assumptions;

/**
 * The one policy for tests whose host packages are missing (QEMU, Ceph, NBD): on CI (environment
 * variable {@code CI} set and not "false") the test fails, since {@code .ci/run} installs every
 * package; elsewhere it is skipped with a banner nobody can miss, saying what to install.
 */
final class HostPackages {
    private HostPackages() {
    }

    /** Whether this runs on CI, where a missing package is a failure rather than a skip. */
    static boolean onCi() {
        String ci = System.getenv("CI");
        return ci != null && !ci.equalsIgnoreCase("false");
    }

    /**
     * Fails (on CI) or skips {@code tests} (e.g. "QEMU guest tests in FooTest") because the Debian
     * packages {@code missing} are not installed; {@code install} is the command that installs them.
     * Never returns.
     */
    static void missing(String tests, List<String> missing, String install) {
        if (onCi()) {
            fail(tests + " cannot run on CI: missing Debian packages " + missing + "; install: " + install);
        }
        String rule = "#".repeat(78);
        System.err.println("\n" + rule
                + "\n#  SKIPPED: " + tests
                + "\n#  missing Debian packages: " + String.join(" ", missing)
                + "\n#  install: " + install
                + "\n#  (./jvhost test installs them when run as root; .ci/run always does)"
                + "\n" + rule + "\n");
        Assumptions.abort(tests + " skipped, missing: " + String.join(" ", missing));
    }
}
