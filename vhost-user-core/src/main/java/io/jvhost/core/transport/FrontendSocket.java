package io.jvhost.core.transport;

import io.jvhost.core.runtime.Backend;
import io.jvhost.core.sys.Fd;

import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * What both socket modes share: one frontend connection at a time on a backend, counted and named
 * {@code <socket file>#<n>}, which {@link #disconnect} drops and {@code close} ends. Server and
 * client differ only in how the next connection comes about (accept, or connect with back-off),
 * so that part is theirs. {@code current} belongs to the control thread.
 */
abstract sealed class FrontendSocket implements Endpoint permits VhostUserServer, VhostUserClient {
    final Path path;
    final Backend backend;
    final ControlLoop loop;
    private final AtomicLong connections = new AtomicLong();
    Connection current;
    volatile boolean closed;

    FrontendSocket(Path path, Backend backend, ControlLoop loop) {
        this.path = path;
        this.backend = backend;
        this.loop = loop;
    }

    /**
     * Serves the frontend connected on {@code socket}: a new {@link Connection} becomes the current
     * one and is registered on the control loop; {@code ended} runs when its session has ended.
     * Control thread.
     */
    final Connection serve(Fd socket, Consumer<Connection> ended) {
        long n = connections.incrementAndGet();
        Connection[] c = new Connection[1];
        c[0] = new Connection(path.getFileName() + "#" + n, socket, backend, () -> ended.accept(c[0]));
        current = c[0];
        loop.register(c[0], c[0]::registered, e -> c[0].drop("cannot register: " + e));
        return c[0];
    }

    /** Drops the current connection, if any, because the backend shuts down. Control thread. */
    final void dropForShutdown() {
        if (current != null) {
            current.drop("backend shutting down");
        }
    }

    @Override
    public final long connections() {
        return connections.get();
    }

    @Override
    public final boolean disconnect(String reason) {
        return Connection.dropOnControlThread(loop, () -> current, reason);
    }
}
