package io.jvhost.core.transport;

import java.io.IOException;
import java.nio.file.Path;

/** The socket path is taken: a live process listens there (and keeps doing so). */
public final class SocketInUseException extends IOException {
    private final Path path;
    private final int pid;

    SocketInUseException(Path path, int pid) {
        super(path + " is in use: a running backend" + (pid > 0 ? " (pid " + pid + ")" : "") + " listens on it");
        this.path = path;
        this.pid = pid;
    }

    public Path path() {
        return path;
    }

    /** The listener's process id, or 0 if unknown. */
    public int pid() {
        return pid;
    }
}
