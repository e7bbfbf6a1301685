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

/** The running process's side: a thread that waits for successors, one at a time. */
public final class HandoverOffer implements AutoCloseable {
    private final Path path;
    private final Fd listener;
    private final Supplier<List<VhostUserServer>> serving;
    /** What {@link #serving} gave when the current successor said hello. */
    private List<VhostUserServer> servers = List.of();
    private final ControlLoop loop;
    private final Handover.DeviceFds devices;
    private final Runnable handedOver;
    final Thread thread;
    private volatile boolean closed;
    /** Whether a successor took over: then the socket file is its. */
    private volatile boolean handed;

    HandoverOffer(Path path, Fd listener, Supplier<List<VhostUserServer>> serving, ControlLoop loop, Handover.DeviceFds devices,
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
            Handover.LOG.error("live upgrade: {} stopped: {}", path, e.getMessage());
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
                Handover.LOG.warn("live upgrade: refused pid {} of uid {}", pid, peer.uid());
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
                Handover.LOG.debug("live upgrade: pid {} left without a hello: {}", pid, e.getMessage());
                return; // a liveness probe (isListening) connects and closes
            }
            String problem = hello.text().split("\n")[0].equals(HandoverChannel.VERSION) ? null
                    : "it speaks " + hello.text().split("\n")[0] + ", this process " + HandoverChannel.VERSION;
            if (problem != null) {
                Handover.LOG.warn("live upgrade: refused pid {}: {}", pid, problem);
                ch.send(HandoverChannel.ABORT, problem);
                return;
            }
            Handover.LOG.info("live upgrade: pid {} asks to take over", pid);
            if (takeOver(ch, pid)) {
                Handover.onLoop(loop, f -> {
                    servers.forEach(VhostUserServer::letGo);
                    f.complete(null);
                });
                Handover.LOG.info("live upgrade: handed over to pid {}", pid);
                handed = true;
                closed = true;
                handedOver.run();
            }
        } catch (IOException e) {
            Handover.LOG.warn("live upgrade: pid {} failed: {}; serving on", pid, e.getMessage());
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
                ch.send(HandoverChannel.ENDPOINT, s.path().toAbsolutePath() + "\n" + String.join("\n", Handover.identity(s.backend)), dup);
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
                    ch.send(HandoverChannel.REPLAY, Handover.encode(m), m.fds());
                }
            }
            ch.send(HandoverChannel.SESSIONS_END, "");
            ch.expect(HandoverChannel.TAKEN, 15_000); // the guest waits meanwhile: a replay takes milliseconds
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
        Handover.LOG.info("live upgrade: paused {} us", (System.nanoTime() - start) / 1000);
        return true;
    }

    /** One try at pausing a server's connection: paused, or null (mid-message, or {@code noConnection}). */
    private record PauseTry(Connection.Paused paused, boolean noConnection) {}

    /**
     * Stops accepting and pauses every server's connection at a message boundary (a connection
     * in the middle of one is tried again each millisecond); per server, its paused connection or
     * null without one.
     */
    private List<Connection.Paused> pauseAll() throws IOException {
        List<Connection.Paused> paused = new ArrayList<>();
        for (VhostUserServer s : servers) {
            long deadline = System.currentTimeMillis() + Handover.PAUSE_TIMEOUT_MILLIS;
            Connection.Paused p = null;
            boolean none = false;
            while (p == null && !none) {
                PauseTry t = Handover.onLoop(loop, f -> {
                    s.suspendAccepting();
                    Connection c = s.current;
                    if (c == null) {
                        f.complete(new PauseTry(null, true));
                    } else {
                        c.pause(pausedOne -> f.complete(new PauseTry(pausedOne, false)));
                    }
                });
                p = t.paused();
                none = t.noConnection();
                if (p == null && !none) {
                    if (System.currentTimeMillis() > deadline) {
                        paused.add(null);
                        resumeAll(paused);
                        throw new IOException(s.path() + ": its frontend connection did not reach a message boundary in "
                                + Handover.PAUSE_TIMEOUT_MILLIS + " ms");
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
            Handover.onLoop(loop, f -> {
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
            Handover.LOG.error("live upgrade: cannot resume: {}", e.getMessage());
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
                Handover.LOG.warn("cannot remove {}: {}", path, e.getMessage());
            }
        }
    }
}
