package io.jvhost.core.transport;

import io.jvhost.core.runtime.Backend;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;
import io.netty.channel.IoEvent;
import io.netty.channel.IoRegistration;
import io.netty.channel.epoll.EpollIoHandle;
import io.netty.channel.epoll.EpollIoOps;
import io.netty.channel.unix.FileDescriptor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Server mode: listens on a Unix socket and serves one frontend at a time. While a frontend is
 * connected, further connections wait in the backlog; when it leaves (and its session is fully
 * cleaned up) the next one is accepted. A frontend going away never stops the server.
 */
public final class VhostUserServer extends FrontendSocket {
    private static final Logger LOG = LoggerFactory.getLogger(VhostUserServer.class);
    private static final int S_IFMT = 0170000, S_IFSOCK = 0140000;

    private final Fd listener;
    private final SocketAccess access;
    private final AtomicLong refused = new AtomicLong();
    private final CompletableFuture<Void> ready = new CompletableFuture<>();
    private IoRegistration registration;
    /** A successor's server accepts nothing until the live upgrade completes ({@link #startAccepting}). */
    private volatile boolean adopting;
    /** Adopted from a predecessor and not yet taken over: closing must leave its socket file alone. */
    private volatile boolean adoptedPending;

    private VhostUserServer(Path path, Backend backend, ControlLoop loop, Fd listener, SocketAccess access) {
        super(path, backend, loop);
        this.listener = listener;
        this.access = access;
    }

    /**
     * Binds {@code path} owner-only (0600, whatever the umask), removing a stale socket file left by
     * a dead process, and starts accepting.
     */
    public static VhostUserServer listen(Path path, Backend backend, ControlLoop loop) throws IOException {
        return listen(path, backend, loop, SocketAccess.OWNER_ONLY);
    }

    /**
     * Binds {@code path} with the file mode and group of {@code access} (set before the socket
     * listens, whatever the umask), removing a stale socket file left by a dead process, and starts
     * accepting the peers {@code access} allows. A socket on which a live process listens is
     * refused, and that process keeps serving.
     */
    public static VhostUserServer listen(Path path, Backend backend, ControlLoop loop, SocketAccess access)
            throws IOException {
        removeStaleSocket(path);
        Fd fd = UnixSockets.listen(path, 16, access.mode(), access.group());
        VhostUserServer server = new VhostUserServer(path, backend, loop, fd, access);
        loop.register(server.new Acceptor(), server::registered, e -> LOG.error("cannot watch {}", path, e));
        server.ready.join();
        LOG.info("listening on {}", path);
        return server;
    }

    /**
     * Live upgrade, the successor's side: serves {@code path} on the listening socket
     * {@code listener} a predecessor handed over (the path stays bound throughout), accepting
     * nothing until {@link #startAccepting()}.
     */
    static VhostUserServer adopt(Path path, Fd listener, Backend backend, ControlLoop loop, SocketAccess access) {
        VhostUserServer server = new VhostUserServer(path, backend, loop, listener, access);
        server.adopting = true;
        server.adoptedPending = true;
        loop.register(server.new Acceptor(), server::registered, e -> LOG.error("cannot watch {}", path, e));
        server.ready.join();
        return server;
    }

    /** A duplicate of the listening socket, for a successor. Any thread. */
    Fd dupListener() throws NativeException {
        return listener.dup();
    }

    /** The successor's side: serves the frontend connection {@code socket} the predecessor paused. Control thread. */
    Connection adoptConnection(Fd socket) {
        return serve(socket, ended -> sessionEnded());
    }

    /** Accepts no frontend while a live upgrade pauses this process. Control thread. */
    void suspendAccepting() {
        adopting = true;
    }

    /** Accepts again after a failed live upgrade. Control thread. */
    void resumeAccepting() {
        startAccepting();
    }

    /** Accepts frontends from now on (the predecessor has let go). Control thread. */
    void startAccepting() {
        adopting = false;
        adoptedPending = false;
        acceptOne();
    }

    /**
     * The successor's side of a failed live upgrade: lets go of everything it adopted without
     * touching what the predecessor still serves: the socket path stays, the frontend is not told.
     * Control thread.
     */
    void abandon() {
        closed = true;
        if (registration != null) {
            registration.cancel();
        }
        if (current != null) {
            current.drop("live upgrade abandoned");
        }
        listener.close();
    }

    /**
     * Live upgrade, the predecessor's side, once a successor has taken over: stops watching the
     * listening socket and the frontend connection and closes its own copies of them, without a word
     * to the frontend; {@link #close()} then leaves the socket file alone (it is the successor's).
     * Control thread.
     */
    void letGo() {
        closed = true;
        adoptedPending = true; // close() must not touch the path
        if (registration != null) {
            registration.cancel();
        }
        if (current != null) {
            current.letGo();
            current = null;
        }
        listener.close();
    }

    /** Deletes {@code path} only if it is a socket nobody listens on; refuses anything else. */
    static void removeStaleSocket(Path path) throws IOException {
        if (!Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        int mode = (Integer) Files.getAttribute(path, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        if ((mode & S_IFMT) != S_IFSOCK) {
            throw new IOException(path + " exists and is not a socket; not touching it");
        }
        if (UnixSockets.isListening(path)) {
            UnixSockets.PeerCredentials owner = UnixSockets.listener(path);
            throw new SocketInUseException(path, owner == null ? 0 : owner.pid());
        }
        LOG.info("removing stale socket {}", path);
        Files.delete(path);
    }

    private void registered(IoRegistration r) {
        registration = r;
        r.submit(EpollIoOps.EPOLLIN.with(EpollIoOps.EPOLLET));
        ready.complete(null);
    }

    public Path path() {
        return path;
    }

    /** How many connections were refused because the peer's uid is not allowed. Any thread. */
    public long refused() {
        return refused.get();
    }

    /** How many frontends have connected so far. Any thread. */
    private final class Acceptor implements EpollIoHandle {
        private final FileDescriptor fd = new FileDescriptor(listener.get());

        @Override
        public FileDescriptor fd() {
            return fd;
        }

        @Override
        public void handle(IoRegistration r, IoEvent event) {
            acceptOne();
        }

        @Override
        public void close() {
            VhostUserServer.this.close();
        }
    }

    /** Accepts the next frontend unless one is being served (edge-triggered: called again when it leaves). */
    private void acceptOne() {
        if (current != null || closed || adopting) {
            return;
        }
        Fd socket;
        do { // edge-triggered: refusing one must not leave the next one waiting unnoticed
            try {
                socket = UnixSockets.accept(listener);
            } catch (NativeException e) {
                LOG.warn("accept on {} failed: {}", path, e.getMessage());
                return;
            }
            if (socket == null) {
                return;
            }
        } while (!allowed(socket));
        serve(socket, ended -> sessionEnded());
    }

    /** Whether {@code access} lets the peer of {@code socket} in; closes it (and logs why) if not. */
    private boolean allowed(Fd socket) {
        if (access.allowedUids() == null) {
            return true;
        }
        UnixSockets.PeerCredentials peer;
        try {
            peer = UnixSockets.peerCredentials(socket);
        } catch (NativeException e) {
            LOG.warn("refused a connection on {}: cannot read its credentials ({})", path, e.getMessage());
            socket.close();
            refused.incrementAndGet();
            return false;
        }
        if (access.allows(peer.uid())) {
            return true;
        }
        LOG.warn("refused a connection on {} from uid {} (pid {}): not an allowed uid {}", path, peer.uid(), peer.pid(),
                java.util.Arrays.toString(access.allowedUids()));
        socket.close();
        refused.incrementAndGet();
        return false;
    }

    private void sessionEnded() {
        current = null;
        acceptOne(); // a frontend may be waiting in the backlog already
    }

    @Override
    public void close() {
        if (closed) {
            return; // closed, abandoned, or handed over: nothing of ours is left to close
        }
        if (adoptedPending) { // the predecessor still serves on this socket: let go, touch nothing
            CompletableFuture<Void> done = new CompletableFuture<>();
            loop.execute(() -> {
                abandon();
                done.complete(null);
            });
            if (!loop.inLoop()) {
                done.join();
            }
            return;
        }
        closed = true;
        CompletableFuture<Void> done = new CompletableFuture<>();
        loop.execute(() -> {
            if (registration != null) {
                registration.cancel();
            }
            dropForShutdown();
            listener.close();
            done.complete(null);
        });
        if (!loop.inLoop()) {
            done.join();
        }
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            LOG.warn("cannot remove {}: {}", path, e.getMessage());
        }
    }
}
