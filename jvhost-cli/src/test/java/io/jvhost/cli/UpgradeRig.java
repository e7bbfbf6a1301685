package io.jvhost.cli;

import io.jvhost.testkit.guest.QemuGuest;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * What the live-upgrade guest tests share: the CLI processes a test starts one after another
 * (predecessors, successors, refused ones), kept so that closing the rig closes every one whatever
 * happened; and guest commands that must succeed within the test's time for one.
 */
final class UpgradeRig implements AutoCloseable {
    private final Path dir;
    private final Duration guestCommandTimeout;
    private final List<CliProcess> started = new ArrayList<>();

    UpgradeRig(Path dir, Duration guestCommandTimeout) {
        this.dir = dir;
        this.guestCommandTimeout = guestCommandTimeout;
    }

    /** Starts the CLI with {@code args} in the test's directory. */
    CliProcess start(String... args) throws Exception {
        return start(Map.of(), args);
    }

    /** Starts the CLI with {@code args}, {@code env} added to this JVM's environment. */
    CliProcess start(Map<String, String> env, String... args) throws Exception {
        CliProcess p = CliProcess.start(dir, List.of(), env, args);
        started.add(p);
        return p;
    }

    /** Runs {@code command} in {@code guest}; it must exit 0. Returns its output. */
    String exec(QemuGuest guest, String command) {
        QemuGuest.Result r = guest.exec(command, guestCommandTimeout);
        assertEquals(0, r.exitStatus(), r.output());
        return r.output();
    }

    @Override
    public void close() {
        started.forEach(CliProcess::close);
    }
}
