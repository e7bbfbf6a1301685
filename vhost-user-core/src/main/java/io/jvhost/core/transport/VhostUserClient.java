package io.jvhost.core.transport;

import io.jvhost.core.runtime.Backend;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;

import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Client mode: connects to a frontend that listens (QEMU {@code server=on}), retrying with
 * back-off until it answers, and connects again whenever the connection ends.
 */
public final class VhostUserClient extends FrontendSocket {
    private static final Logger LOG = LoggerFactory.getLogger(VhostUserClient.class);
    private static final long FIRST_RETRY_MILLIS = 50, MAX_RETRY_MILLIS = 2000;

    private long retryMillis = FIRST_RETRY_MILLIS;

    private VhostUserClient(Path path, Backend backend, ControlLoop loop) {
        super(path, backend, loop);
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
        serve(socket, this::sessionEnded);
    }

    /**
     * Connects again soon after a session that got somewhere; after one that ended before its
     * first message (a frontend that accepts and hangs up at once) backs off as after a refused
     * connect, instead of reconnecting twenty times a second for as long as that goes on.
     */
    private void sessionEnded(Connection c) {
        current = null;
        if (closed) {
            return;
        }
        if (c.session().messages() > 0) {
            retryMillis = FIRST_RETRY_MILLIS;
            loop.schedule(this::attempt, FIRST_RETRY_MILLIS);
        } else {
            loop.schedule(this::attempt, retryMillis);
            retryMillis = Math.min(retryMillis * 2, MAX_RETRY_MILLIS);
        }
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
            dropForShutdown();
            done.complete(null);
        });
        if (!loop.inLoop()) {
            done.join();
        }
    }
}
