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
    static final Logger LOG = LoggerFactory.getLogger(Handover.class);
    /** How long a connection may take to reach a message boundary before the upgrade is called off. */
    static final long PAUSE_TIMEOUT_MILLIS = 5_000;

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
    public static HandoverTakeover contact(Path path, List<Path> sockets) throws IOException {
        if (!UnixSockets.isListening(path)) {
            return null;
        }
        HandoverChannel ch;
        try {
            ch = new HandoverChannel(UnixSockets.connect(path, false));
        } catch (NativeException e) {
            throw new IOException("cannot reach the running process at " + path + ": " + e.getMessage(), e);
        }
        HandoverTakeover t = new HandoverTakeover(ch);
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
    public static HandoverOffer offer(Path path, Fd inherited, Supplier<List<VhostUserServer>> servers, ControlLoop loop, DeviceFds devices,
                              Runnable handedOver) throws IOException {
        Fd listener = inherited;
        if (listener == null) {
            VhostUserServer.removeStaleSocket(path);
            listener = UnixSockets.listen(path, 4, 0600, null);
        }
        HandoverOffer o = new HandoverOffer(path, listener, servers, loop, devices, handedOver);
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
    static byte[] encode(Message m) {
        byte[] b = new byte[8 + m.payload().length];
        Payload.putU32(b, 0, m.request());
        Payload.putU32(b, 4, m.flags());
        System.arraycopy(m.payload(), 0, b, 8, m.payload().length);
        return b;
    }

    static Message decode(HandoverChannel.Frame f) throws IOException {
        if (f.payload().length < 8) {
            Fd.closeAll(f.fds());
            throw new IOException("replay frame of " + f.payload().length + " bytes");
        }
        byte[] payload = java.util.Arrays.copyOfRange(f.payload(), 8, f.payload().length);
        return new Message(Payload.u32(f.payload(), 0), Payload.u32(f.payload(), 4), payload, f.fds());
    }

    /** Runs {@code task} on the control loop and waits for what it completes. */
    static <T> T onLoop(ControlLoop loop, java.util.function.Consumer<CompletableFuture<T>> task) throws IOException {
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
}
