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

/** The successor's side of one live upgrade: what the predecessor offered, then the takeover itself. */
public final class HandoverTakeover implements AutoCloseable {
    private final HandoverChannel ch;
    /** The predecessor's pid, as it says (the listener's credentials name whoever made it, maybe an ancestor). */
    private long pid;
    private final Map<String, Fd> endpoints = new LinkedHashMap<>();
    private final Map<String, List<Fd>> devices = new LinkedHashMap<>();
    private final Map<String, List<String>> identities = new LinkedHashMap<>();
    private final Map<String, VhostUserServer> adopted = new LinkedHashMap<>();
    private Fd listener;
    private Runnable beforeTaken = () -> { }, afterAbort = () -> { };

    HandoverTakeover(HandoverChannel ch) {
        this.ch = ch;
    }

    /** The predecessor's pid (0 until its offer arrived). */
    public long pid() {
        return pid;
    }

    void receiveOffer() throws IOException {
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

    /**
     * {@code beforeTaken} runs just before this process says TAKEN (after which the predecessor
     * exits), {@code afterAbort} if the takeover fails after that: a service manager is told whose
     * pid is the service's now (systemd's MAINPID), before the old main process goes.
     */
    public void onCommit(Runnable beforeTaken, Runnable afterAbort) {
        this.beforeTaken = beforeTaken;
        this.afterAbort = afterAbort;
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
        List<String> theirs = identities.getOrDefault(key, List.of()), ours = Handover.identity(backend);
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
        boolean committed = false;
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
                        sessions.get(current).add(Handover.decode(f));
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
                String failure = Handover.onLoop(loop, f -> {
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
            committed = true;
            beforeTaken.run();
            ch.send(HandoverChannel.TAKEN, "");
            ch.expect(HandoverChannel.BYE, 30_000);
        } catch (IOException e) {
            if (committed) {
                afterAbort.run();
            }
            try {
                ch.send(HandoverChannel.ABORT, e.getMessage());
            } catch (IOException ignored) {
                // the predecessor is gone or has given up: it serves on either way
            }
            abandon(loop);
            throw e;
        }
        Handover.onLoop(loop, f -> {
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
            Handover.onLoop(loop, f -> {
                adopted.values().forEach(VhostUserServer::abandon);
                f.complete(null);
            });
        } catch (IOException e) {
            Handover.LOG.error("live upgrade: cannot let go: {}", e.getMessage());
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
