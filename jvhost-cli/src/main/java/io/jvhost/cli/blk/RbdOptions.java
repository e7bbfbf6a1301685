package io.jvhost.cli.blk;

import io.jvhost.blk.RbdStore;
import io.jvhost.cli.Failure;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.Rados;

import java.nio.file.Path;
import java.time.Duration;

import picocli.CommandLine.Option;

/**
 * {@code jvhost blk --rbd POOL/IMAGE} and the options of the Ceph connection. Every way opening the
 * image can fail (bad POOL/IMAGE, missing librbd, unreadable conf, unreachable monitors, no such
 * pool or image) is a {@link Failure}: one line on stderr that says what to fix, and no stack trace.
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

    /** Refuses a POOL/IMAGE or timeout no image can have. */
    void check(String spec) {
        String[] parts = spec.split("/", -1);
        if (parts.length != 2 || parts[0].isEmpty() || parts[1].isEmpty() || spec.contains("@")) {
            throw new Failure("--rbd wants POOL/IMAGE (e.g. rbd/disk0), got '" + spec + "'");
        }
        if (timeoutSeconds < 1) {
            throw new Failure("--ceph-timeout wants a number of seconds >= 1, got " + timeoutSeconds);
        }
    }

    /** Opens the store, or throws a {@link Failure} saying in one line why it cannot. */
    RbdStore open(String spec, boolean readOnly) {
        check(spec);
        String[] parts = spec.split("/", -1);
        String problem = Rados.libraryProblem();
        if (problem != null) {
            throw new Failure("--rbd " + spec + ": " + problem);
        }
        try {
            return RbdStore.open(conf, id, parts[0], parts[1], readOnly, Duration.ofSeconds(timeoutSeconds));
        } catch (NativeException | RuntimeException e) {
            throw new Failure("--rbd " + spec + ": " + e.getMessage(), e);
        }
    }
}
