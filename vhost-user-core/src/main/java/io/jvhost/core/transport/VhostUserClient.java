package io.jvhost.core.transport;

import io.jvhost.core.runtime.Backend;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;

import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Client mode: connects to a frontend that listens (QEMU {@code server=on}), retrying with
 * back-off until it answers, and connects again whenever the connection ends.
 */
public final class VhostUserClient implements Endpoint {
    private static final Logger LOG = LoggerFactory.getLogger(VhostUserClient.class);
    private static final long FIRST_RETRY_MILLIS = 50, MAX_RETRY_MILLIS = 2000;

    private final Path path;
    private final Backend backend;
    private final ControlLoop loop;
    private final AtomicLong connections = new AtomicLong();
    private long retryMillis = FIRST_RETRY_MILLIS;
    private Connection current;
    private volatile boolean closed;

    private VhostUserClient(Path path, Backend backend, ControlLoop loop) {
        this.path = path;
        this.backend = backend;
        this.loop = loop;
    }

    /** Starts connecting to {@code path}; returns at once. */
    public static VhostUserClient connect(Path path, Backend backend, ControlLoop loop) {
        VhostUserClient c = new VhostUserClient(path, backend, loop);
        loop.execute(c::attempt);
        return c;
    }

    private void attempt() {
        if (closed) {
            return;
        }
        Fd socket;
        try {
            socket = UnixSockets.connect(path, true);
        } catch (NativeException e) {
            if (retryMillis == FIRST_RETRY_MILLIS) {
                LOG.info("waiting for a frontend at {} ({})", path, e.getMessage());
            }
            loop.schedule(this::attempt, retryMillis);
            retryMillis = Math.min(retryMillis * 2, MAX_RETRY_MILLIS);
            return;
        }
        retryMillis = FIRST_RETRY_MILLIS;
        long n = connections.incrementAndGet();
        Connection c = new Connection(path.getFileName() + "#" + n, socket, backend, this::sessionEnded);
        current = c;
        loop.register(c, c::registered, e -> c.drop("cannot register: " + e));
    }

    private void sessionEnded() {
        current = null;
        if (!closed) {
            loop.schedule(this::attempt, FIRST_RETRY_MILLIS);
        }
    }

    @Override
    public long connections() {
        return connections.get();
    }

    @Override
    public boolean disconnect(String reason) {
        CompletableFuture<Boolean> dropped = new CompletableFuture<>();
        loop.execute(() -> {
            Connection c = current;
            if (c != null) {
                c.drop(reason);
            }
            dropped.complete(c != null);
        });
        return dropped.join();
    }

    /**
     * Stops reconnecting and drops the current connection; returns once the drop has started the
     * session's teardown (its queues are being detached), so the backend may be closed next.
     */
    @Override
    public void close() {
        closed = true;
        CompletableFuture<Void> done = new CompletableFuture<>();
        loop.execute(() -> {
            if (current != null) {
                current.drop("backend shutting down");
            }
            done.complete(null);
        });
        if (!loop.inLoop()) {
            done.join();
        }
    }
}
