package io.jvhost.cli.blk;

import io.jvhost.blk.RbdStore;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.Rados;

import java.nio.file.Path;
import java.time.Duration;

import picocli.CommandLine.Option;

/**
 * {@code jvhost blk --rbd POOL/IMAGE} and the options of the Ceph connection. Every way opening the
 * image can fail (bad POOL/IMAGE, missing librbd, unreadable conf, unreachable monitors, no such
 * pool or image) ends in one line on stderr that says what to fix, and no stack trace.
 */
public final class RbdOptions {
    @Option(names = "--ceph-conf", paramLabel = "PATH", defaultValue = "/etc/ceph/ceph.conf",
            description = "With --rbd: the cluster's ceph.conf (default ${DEFAULT-VALUE}).")
    Path conf;

    @Option(names = "--ceph-id", paramLabel = "NAME", defaultValue = "admin",
            description = "With --rbd: connect as client.NAME (default ${DEFAULT-VALUE}).")
    String id;

    @Option(names = "--ceph-timeout", paramLabel = "SECONDS", defaultValue = "10",
            description = "With --rbd: give up when no monitor answers within SECONDS (default ${DEFAULT-VALUE}).")
    int timeoutSeconds;

    /** Opens the store, or prints why it cannot on one line and returns null. */
    RbdStore open(String spec, boolean readOnly) {
        String[] parts = spec.split("/", -1);
        if (parts.length != 2 || parts[0].isEmpty() || parts[1].isEmpty() || spec.contains("@")) {
            fail("--rbd wants POOL/IMAGE (e.g. rbd/disk0), got '" + spec + "'");
            return null;
        }
        if (timeoutSeconds < 1) {
            fail("--ceph-timeout wants a number of seconds >= 1, got " + timeoutSeconds);
            return null;
        }
        String problem = Rados.libraryProblem();
        if (problem != null) {
            fail("--rbd " + spec + ": " + problem);
            return null;
        }
        try {
            return RbdStore.open(conf, id, parts[0], parts[1], readOnly, Duration.ofSeconds(timeoutSeconds));
        } catch (NativeException | RuntimeException e) {
            fail("--rbd " + spec + ": " + e.getMessage());
            return null;
        }
    }

    private static void fail(String message) {
        System.err.println("jvhost blk: " + message);
    }
}
