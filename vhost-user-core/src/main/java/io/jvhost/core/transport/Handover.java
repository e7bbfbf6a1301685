package io.jvhost.core.transport;

import io.jvhost.core.protocol.Message;
import io.jvhost.core.protocol.Payload;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.sys.Epoll;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.function.Supplier;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Live upgrade: a running process hands its vhost-user sockets, frontend connections and device
 * state to a successor started with the same command, and the frontend never notices.
 *
 * <p>The running process {@link #offer offers} on a Unix socket of its own. A successor
 * {@link #contact contacts} it there and gets the listening sockets and the devices' own fds
 * (a TAP's queues) while the old process still serves; it opens its devices and starts its
 * pollers, then says READY. Only then does the old process pause: each connection stops reading at
 * a message boundary, each queue stops at a request boundary (what is in flight finishes and is
 * published), and the old process sends each frontend connection with the messages that rebuild
 * its session (memory table, inflight region, vrings where they stopped...; see
 * {@code Session.pause}), every fd duplicated. The successor replays them with its queues held,
 * says TAKEN, and starts serving at the old process's BYE, which the old one sends just before it
 * exits. Every failure before BYE leaves the old process serving: the successor abandons what it
 * adopted without a word to the frontend. The frontend's socket is the same connection
 * throughout, so QEMU sees no disconnect.
 */
public final class Handover {
    private static final Logger LOG = LoggerFactory.getLogger(Handover.class);
    /** How long a connection may take to reach a message boundary before the upgrade is called off. */
    private static final long PAUSE_TIMEOUT_MILLIS = 5_000;

    private Handover() {
    }

    /** The fds a successor needs of a device (a TAP's queues, a RAM disk's memory), by key; duplicates the caller closes. */
    @FunctionalInterface
    public interface DeviceFds {
        Map<String, List<Fd>> duplicate() throws NativeException;

        DeviceFds NONE = Map::of;
    }

    /**
     * The successor's side: a predecessor listening at {@code path}, contacted (told the
     * {@code sockets} this process will serve) and its offer received; null when no live process
     * listens there.
     *
     * @throws IOException when the predecessor refuses (it serves other sockets) or breaks off
     */
    public static Takeover contact(Path path, List<Path> sockets) throws IOException {
        if (!UnixSockets.isListening(path)) {
            return null;
        }
        HandoverChannel ch;
        try {
            ch = new HandoverChannel(UnixSockets.connect(path, false));
        } catch (NativeException e) {
            throw new IOException("cannot reach the running process at " + path + ": " + e.getMessage(), e);
        }
        Takeover t = new Takeover(ch);
        try {
            StringBuilder hello = new StringBuilder(HandoverChannel.VERSION);
            sockets.forEach(s -> hello.append('\n').append(s.toAbsolutePath()));
            ch.send(HandoverChannel.HELLO, hello.toString());
            t.receiveOffer();
        } catch (IOException e) {
            t.close();
            throw new IOException("the running process at " + path + " did not hand over: " + e.getMessage(), e);
        }
        return t;
    }

    /**
     * The running process's side: listens for a successor on {@code inherited} (the listener a
     * predecessor handed over) or, when null, on a new socket at {@code path} (owner-only; a stale
     * socket file is replaced); {@code handedOver} runs once a successor has taken over every
     * endpoint (the process should exit then, touching nothing it handed over).
     */
    public static Offer offer(Path path, Fd inherited, Supplier<List<VhostUserServer>> servers, ControlLoop loop, DeviceFds devices,
                              Runnable handedOver) throws IOException {
        Fd listener = inherited;
        if (listener == null) {
            VhostUserServer.removeStaleSocket(path);
            listener = UnixSockets.listen(path, 4, 0600, null);
        }
        Offer o = new Offer(path, listener, servers, loop, devices, handedOver);
        o.thread.start();
        LOG.info("live upgrade: a successor started with --handover {} takes over", path);
        return o;
    }

    /**
     * What a frontend sees of {@code backend}'s device before any message: offered features and
     * protocol features, queue count, config space. A successor must show the same, or the session it
     * replays would not be the one the frontend negotiated (another --queues, --read-only, MAC...).
     */
    static List<String> identity(Backend backend) {
        return List.of(
                "features 0x" + Long.toHexString(io.jvhost.core.runtime.FeaturePolicy.features(backend.device())),
                "protocol features 0x" + Long.toHexString(io.jvhost.core.runtime.FeaturePolicy.protocolFeatures(backend.device())),
                "queues " + backend.queueCount(),
                "config " + java.util.HexFormat.of().formatHex(backend.device().config()));
    }

    /** One message of a session's replay, as a REPLAY frame's payload: request, flags, payload. */
    private static byte[] encode(Message m) {
        byte[] b = new byte[8 + m.payload().length];
        Payload.putU32(b, 0, m.request());
        Payload.putU32(b, 4, m.flags());
        System.arraycopy(m.payload(), 0, b, 8, m.payload().length);
        return b;
    }

    private static Message decode(HandoverChannel.Frame f) throws IOException {
        if (f.payload().length < 8) {
            Fd.closeAll(f.fds());
            throw new IOException("replay frame of " + f.payload().length + " bytes");
        }
        byte[] payload = java.util.Arrays.copyOfRange(f.payload(), 8, f.payload().length);
        return new Message(Payload.u32(f.payload(), 0), Payload.u32(f.payload(), 4), payload, f.fds());
    }

    /** Runs {@code task} on the control loop and waits for what it completes. */
    private static <T> T onLoop(ControlLoop loop, java.util.function.Consumer<CompletableFuture<T>> task) throws IOException {
        CompletableFuture<T> f = new CompletableFuture<>();
        loop.execute(() -> {
            try {
                task.accept(f);
            } catch (RuntimeException e) {
                f.completeExceptionally(e);
            }
        });
        try {
            return f.get(60, java.util.concurrent.TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted");
        } catch (java.util.concurrent.ExecutionException | java.util.concurrent.TimeoutException e) {
            throw new IOException(e.getCause() != null ? e.getCause().getMessage() : e.toString(), e);
        }
    }

    /** The running process's side: a thread that waits for successors, one at a time. */
    public static final class Offer implements AutoCloseable {
        private final Path path;
        private final Fd listener;
        private final Supplier<List<VhostUserServer>> serving;
        /** What {@link #serving} gave when the current successor said hello. */
        private List<VhostUserServer> servers = List.of();
        private final ControlLoop loop;
        private final DeviceFds devices;
        private final Runnable handedOver;
        private final Thread thread;
        private volatile boolean closed;
        /** Whether a successor took over: then the socket file is its. */
        private volatile boolean handed;

        private Offer(Path path, Fd listener, Supplier<List<VhostUserServer>> serving, ControlLoop loop, DeviceFds devices,
                      Runnable handedOver) {
            this.path = path;
            this.listener = listener;
            this.serving = serving;
            this.loop = loop;
            this.devices = devices;
            this.handedOver = handedOver;
            this.thread = Thread.ofPlatform().daemon(true).name("jvhost-handover").unstarted(this::acceptLoop);
        }

        private void acceptLoop() {
            try (Epoll epoll = new Epoll(1)) {
                epoll.add(listener.get(), 0);
                while (!closed) {
                    if (epoll.await(500) <= 0) {
                        continue;
                    }
                    Fd socket = UnixSockets.accept(listener);
                    if (socket != null && !closed) {
                        converse(socket);
                    } else if (socket != null) {
                        socket.close();
                    }
                }
            } catch (NativeException e) {
                LOG.error("live upgrade: {} stopped: {}", path, e.getMessage());
            }
        }

        /** One successor: refused, or taken over (then {@code handedOver} runs), or failed (then this process serves on). */
        private void converse(Fd socket) {
            int pid;
            try {
                UnixSockets.PeerCredentials peer = UnixSockets.peerCredentials(socket);
                pid = peer.pid();
                int ours = (Integer) java.nio.file.Files.getAttribute(Path.of("/proc/self"), "unix:uid");
                if (peer.uid() != 0 && peer.uid() != ours) { // the socket is 0600; this is the second lock
                    LOG.warn("live upgrade: refused pid {} of uid {}", pid, peer.uid());
                    socket.close();
                    return;
                }
            } catch (IOException e) {
                socket.close();
                return;
            }
            try (HandoverChannel ch = new HandoverChannel(socket)) {
                HandoverChannel.Frame hello;
                try {
                    hello = ch.expect(HandoverChannel.HELLO, 10_000);
                } catch (IOException e) {
                    LOG.debug("live upgrade: pid {} left without a hello: {}", pid, e.getMessage());
                    return; // a liveness probe (isListening) connects and closes
                }
                String problem = hello.text().split("\n")[0].equals(HandoverChannel.VERSION) ? null
                        : "it speaks " + hello.text().split("\n")[0] + ", this process " + HandoverChannel.VERSION;
                if (problem != null) {
                    LOG.warn("live upgrade: refused pid {}: {}", pid, problem);
                    ch.send(HandoverChannel.ABORT, problem);
                    return;
                }
                LOG.info("live upgrade: pid {} asks to take over", pid);
                if (takeOver(ch, pid)) {
                    onLoop(loop, f -> {
                        servers.forEach(VhostUserServer::letGo);
                        f.complete(null);
                    });
                    LOG.info("live upgrade: handed over to pid {}", pid);
                    handed = true;
                    closed = true;
                    handedOver.run();
                }
            } catch (IOException e) {
                LOG.warn("live upgrade: pid {} failed: {}; serving on", pid, e.getMessage());
            }
        }

        /** Offers, pauses, sends the sessions; true once the successor took over (BYE sent). */
        private boolean takeOver(HandoverChannel ch, int pid) throws IOException {
            servers = List.copyOf(serving.get());
            for (VhostUserServer s : servers) {
                if (!s.backend.keepsFds()) {
                    ch.send(HandoverChannel.ABORT, s.path() + ": its backend keeps no fds to hand over (Backend.keepFdsForHandover)");
                    throw new IOException(s.path() + " cannot be handed over: its backend keeps no fds");
                }
            }
            for (VhostUserServer s : servers) {
                try (Fd dup = s.dupListener()) {
                    ch.send(HandoverChannel.ENDPOINT, s.path().toAbsolutePath() + "\n" + String.join("\n", identity(s.backend)), dup);
                }
            }
            for (Map.Entry<String, List<Fd>> e : devices.duplicate().entrySet()) {
                try {
                    ch.send(HandoverChannel.DEVICE, e.getKey(), e.getValue().toArray(new Fd[0]));
                } finally {
                    e.getValue().forEach(Fd::close);
                }
            }
            try (Fd dup = listener.dup()) {
                ch.send(HandoverChannel.LISTENER, "", dup);
            }
            ch.send(HandoverChannel.OFFER_END, Long.toString(ProcessHandle.current().pid()));
            ch.expect(HandoverChannel.READY, 120_000); // it opens its devices meanwhile (an RBD image, a TAP)
            long start = System.nanoTime();
            List<Connection.Paused> paused = pauseAll();
            try {
                for (int i = 0; i < servers.size(); i++) {
                    Connection.Paused p = paused.get(i);
                    if (p == null) {
                        continue;
                    }
                    ch.send(HandoverChannel.SESSION, servers.get(i).path().toAbsolutePath().toString(), p.socket());
                    for (Message m : p.messages()) {
                        ch.send(HandoverChannel.REPLAY, encode(m), m.fds());
                    }
                }
                ch.send(HandoverChannel.SESSIONS_END, "");
                ch.expect(HandoverChannel.TAKEN, 60_000);
                ch.send(HandoverChannel.BYE, "");
            } catch (IOException e) {
                resumeAll(paused);
                throw e;
            } finally {
                for (Connection.Paused p : paused) {
                    if (p != null) {
                        p.socket().close();
                        p.messages().forEach(m -> Fd.closeAll(m.fds()));
                    }
                }
            }
            LOG.info("live upgrade: paused {} us", (System.nanoTime() - start) / 1000);
            return true;
        }

        /**
         * Stops accepting and pauses every server's connection at a message boundary (a connection
         * in the middle of one is tried again each millisecond); per server, its paused connection or
         * null without one.
         */
        private List<Connection.Paused> pauseAll() throws IOException {
            List<Connection.Paused> paused = new ArrayList<>();
            for (VhostUserServer s : servers) {
                long deadline = System.currentTimeMillis() + PAUSE_TIMEOUT_MILLIS;
                Connection.Paused p = null;
                boolean none = false;
                while (p == null && !none) {
                    Object[] r = onLoop(loop, f -> {
                        s.suspendAccepting();
                        Connection c = s.current;
                        if (c == null) {
                            f.complete(new Object[] {null, true});
                        } else {
                            c.pause(pausedOne -> f.complete(new Object[] {pausedOne, false}));
                        }
                    });
                    p = (Connection.Paused) r[0];
                    none = (Boolean) r[1];
                    if (p == null && !none) {
                        if (System.currentTimeMillis() > deadline) {
                            paused.add(null);
                            resumeAll(paused);
                            throw new IOException(s.path() + ": its frontend connection did not reach a message boundary in "
                                    + PAUSE_TIMEOUT_MILLIS + " ms");
                        }
                        try {
                            Thread.sleep(1);
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                            throw new IOException("interrupted");
                        }
                    }
                }
                paused.add(p);
            }
            return paused;
        }

        /** The successor failed: every paused connection reads again, every server accepts again. */
        private void resumeAll(List<Connection.Paused> paused) {
            try {
                onLoop(loop, f -> {
                    for (int i = 0; i < paused.size(); i++) {
                        VhostUserServer s = servers.get(i);
                        if (paused.get(i) != null && s.current != null) {
                            s.current.resumeAfterPause();
                        }
                    }
                    servers.forEach(VhostUserServer::resumeAccepting);
                    f.complete(null);
                });
            } catch (IOException e) {
                LOG.error("live upgrade: cannot resume: {}", e.getMessage());
            }
        }

        /** Stops waiting for successors; the socket file stays only if a successor has taken it over. */
        @Override
        public void close() {
            closed = true;
            if (!handed) {
                try {
                    thread.join(2_000);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                listener.close();
                try {
                    java.nio.file.Files.deleteIfExists(path);
                } catch (IOException e) {
                    LOG.warn("cannot remove {}: {}", path, e.getMessage());
                }
            }
        }
    }

    /** The successor's side of one live upgrade: what the predecessor offered, then the takeover itself. */
    public static final class Takeover implements AutoCloseable {
        private final HandoverChannel ch;
        /** The predecessor's pid, as it says (the listener's credentials name whoever made it, maybe an ancestor). */
        private long pid;
        private final Map<String, Fd> endpoints = new LinkedHashMap<>();
        private final Map<String, List<Fd>> devices = new LinkedHashMap<>();
        private final Map<String, List<String>> identities = new LinkedHashMap<>();
        private final Map<String, VhostUserServer> adopted = new LinkedHashMap<>();
        private Fd listener;

        private Takeover(HandoverChannel ch) {
            this.ch = ch;
        }

        /** The predecessor's pid (0 until its offer arrived). */
        public long pid() {
            return pid;
        }

        private void receiveOffer() throws IOException {
            while (true) {
                HandoverChannel.Frame f = ch.receive(30_000);
                switch (f.type()) {
                    case HandoverChannel.ENDPOINT -> {
                        List<String> lines = List.of(f.text().split("\n"));
                        endpoints.put(lines.get(0), only(f));
                        identities.put(lines.get(0), lines.subList(1, lines.size()));
                    }
                    case HandoverChannel.DEVICE -> devices.computeIfAbsent(f.text(), k -> new ArrayList<>()).addAll(List.of(f.fds()));
                    case HandoverChannel.LISTENER -> listener = only(f);
                    case HandoverChannel.OFFER_END -> {
                        try {
                            pid = Long.parseLong(f.text());
                        } catch (NumberFormatException e) {
                            throw new IOException("offer without a pid");
                        }
                        if (listener == null) {
                            throw new IOException("no handover listener offered");
                        }
                        return;
                    }
                    case HandoverChannel.ABORT -> throw new IOException(f.text());
                    default -> {
                        Fd.closeAll(f.fds());
                        throw new IOException("unexpected handover frame " + f.type());
                    }
                }
            }
        }

        private static Fd only(HandoverChannel.Frame f) throws IOException {
            if (f.fds().length != 1) {
                Fd.closeAll(f.fds());
                throw new IOException("handover frame " + f.type() + " with " + f.fds().length + " fds");
            }
            return f.fds()[0];
        }

        /** Whether the predecessor serves {@code path} (then {@link #server} takes it over; otherwise it is new). */
        public boolean offers(Path path) {
            return endpoints.containsKey(path.toAbsolutePath().toString());
        }

        /** The device fds offered under {@code key} (the caller owns them now), or an empty list. */
        public List<Fd> deviceFds(String key) {
            List<Fd> fds = devices.remove(key);
            return fds == null ? List.of() : fds;
        }

        /**
         * A server on the listening socket the predecessor had on {@code path}, accepting nothing
         * until {@link #complete}.
         */
        public VhostUserServer server(Path path, Backend backend, ControlLoop loop, SocketAccess access) throws IOException {
            String key = path.toAbsolutePath().toString();
            List<String> theirs = identities.getOrDefault(key, List.of()), ours = identity(backend);
            for (int i = 0; i < ours.size(); i++) {
                String their = i < theirs.size() ? theirs.get(i) : "nothing";
                if (!their.equals(ours.get(i))) {
                    throw new IOException(path + ": the running device has " + their + ", this command's " + ours.get(i)
                            + " (give the same device options)");
                }
            }
            Fd fd = endpoints.remove(key);
            if (fd == null) {
                throw new IOException("the running process offered no socket " + path);
            }
            VhostUserServer s = VhostUserServer.adopt(path, fd, backend, loop, access);
            adopted.put(path.toAbsolutePath().toString(), s);
            return s;
        }

        /**
         * Takes over: READY, the sessions replayed with queues held, TAKEN, and at the
         * predecessor's BYE every queue starts and every server reads and accepts. Returns the
         * handover listener, to offer to this process's own successor.
         *
         * @throws IOException when anything fails before BYE: what was adopted is let go, the
         *                     predecessor serves on
         */
        public Fd complete(ControlLoop loop) throws IOException {
            List<Connection> connections = new ArrayList<>();
            try {
                if (!endpoints.isEmpty()) {
                    throw new IOException("it serves " + String.join(", ", endpoints.keySet()) + ", which this command does not"
                            + " (a successor serves at least what its predecessor does)");
                }
                ch.send(HandoverChannel.READY, "");
                Map<String, List<Message>> sessions = new LinkedHashMap<>();
                Map<String, Fd> sockets = new LinkedHashMap<>();
                String current = null;
                while (true) {
                    HandoverChannel.Frame f = ch.receive(30_000);
                    if (f.type() == HandoverChannel.SESSIONS_END) {
                        break;
                    }
                    switch (f.type()) {
                        case HandoverChannel.SESSION -> {
                            current = f.text();
                            sockets.put(current, only(f));
                            sessions.put(current, new ArrayList<>());
                        }
                        case HandoverChannel.REPLAY -> {
                            if (current == null) {
                                Fd.closeAll(f.fds());
                                throw new IOException("replay before a session");
                            }
                            sessions.get(current).add(decode(f));
                        }
                        case HandoverChannel.ABORT -> throw new IOException(f.text());
                        default -> {
                            Fd.closeAll(f.fds());
                            throw new IOException("unexpected handover frame " + f.type());
                        }
                    }
                }
                for (Map.Entry<String, Fd> e : sockets.entrySet()) {
                    VhostUserServer s = adopted.get(e.getKey());
                    if (s == null) {
                        e.getValue().close();
                        throw new IOException("a session for " + e.getKey() + ", which this process does not serve");
                    }
                    List<Message> messages = sessions.get(e.getKey());
                    String failure = onLoop(loop, f -> {
                        Connection c = s.adoptConnection(e.getValue());
                        connections.add(c);
                        c.replay(messages, why -> f.complete(why == null ? "" : why));
                    });
                    if (!failure.isEmpty()) {
                        throw new IOException(e.getKey() + ": " + failure);
                    }
                }
                if (Boolean.getBoolean("jvhost.handover.fail-after-replay")) { // fault injection: tests prove the predecessor resumes
                    throw new IOException("failing on purpose after the replay (-Djvhost.handover.fail-after-replay)");
                }
                ch.send(HandoverChannel.TAKEN, "");
                ch.expect(HandoverChannel.BYE, 30_000);
            } catch (IOException e) {
                try {
                    ch.send(HandoverChannel.ABORT, e.getMessage());
                } catch (IOException ignored) {
                    // the predecessor is gone or has given up: it serves on either way
                }
                abandon(loop);
                throw e;
            }
            onLoop(loop, f -> {
                connections.forEach(Connection::start);
                adopted.values().forEach(VhostUserServer::startAccepting);
                f.complete(null);
            });
            Fd l = listener;
            listener = null;
            close();
            return l;
        }

        /** Lets go of everything adopted, leaving the predecessor's sockets and frontends as they are. */
        private void abandon(ControlLoop loop) {
            try {
                onLoop(loop, f -> {
                    adopted.values().forEach(VhostUserServer::abandon);
                    f.complete(null);
                });
            } catch (IOException e) {
                LOG.error("live upgrade: cannot let go: {}", e.getMessage());
            }
            adopted.clear();
        }

        @Override
        public void close() {
            ch.close();
            endpoints.values().forEach(Fd::close);
            endpoints.clear();
            devices.values().forEach(l -> l.forEach(Fd::close));
            devices.clear();
            if (listener != null) {
                listener.close();
                listener = null;
            }
        }
    }
}
