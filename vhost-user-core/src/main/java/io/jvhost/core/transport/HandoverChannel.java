package io.jvhost.core.transport;

import io.jvhost.core.sys.Epoll;
import io.jvhost.core.sys.Errno;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.MessageIo;
import io.jvhost.core.sys.NativeException;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * One live-upgrade conversation between a running process and its successor, over a Unix stream
 * socket: frames of {@code [u32 type][u32 length][payload]}, each with its fds (SCM_RIGHTS). Every
 * wait has a deadline, so a successor or predecessor that hangs cannot hold the other forever.
 * One thread at a time.
 */
final class HandoverChannel implements AutoCloseable {
    /** Successor to predecessor: the protocol version and the sockets it serves, a line each. */
    static final int HELLO = 1;
    /** Predecessor: a vhost-user socket's path and its listening socket. */
    static final int ENDPOINT = 2;
    /** Predecessor: a device's own fds under a key (a TAP's queues, a RAM disk's memory). */
    static final int DEVICE = 3;
    /** Predecessor: the handover socket's listener, for the successor's own successor. */
    static final int LISTENER = 4;
    static final int OFFER_END = 5;
    /** Successor: its devices are open and its pollers run; the predecessor may pause. */
    static final int READY = 6;
    /** Predecessor: the frontend connection of one endpoint (payload: its path). */
    static final int SESSION = 7;
    /** Predecessor: one message that rebuilds the last SESSION's state. */
    static final int REPLAY = 8;
    static final int SESSIONS_END = 9;
    /** Successor: every session is rebuilt; from the predecessor's BYE on, it serves. */
    static final int TAKEN = 10;
    /** Predecessor: it has let go for good (it exits next). */
    static final int BYE = 11;
    /** Either side: the upgrade is off (payload: why). */
    static final int ABORT = 12;

    static final String VERSION = "jvhost-handover 1";
    private static final int HEADER = 8;
    private static final int MAX_PAYLOAD = 65536;
    private static final int MAX_FDS_PER_FRAME = 16;

    /** One frame as received; the receiver owns its fds. */
    record Frame(int type, byte[] payload, Fd[] fds) {
        String text() {
            return new String(payload, StandardCharsets.UTF_8);
        }
    }

    private final Fd socket;
    private final MessageIo io = new MessageIo(HEADER + MAX_PAYLOAD);
    private final Epoll epoll;

    /** Takes {@code socket} (set non-blocking here). */
    HandoverChannel(Fd socket) throws NativeException {
        this.socket = socket;
        LibC.check(LibC.setNonBlocking(socket.get()), "O_NONBLOCK");
        this.epoll = new Epoll(1);
        LibC.check(epoll.add(socket.get(), 0), "epoll_ctl");
    }

    Fd socket() {
        return socket;
    }

    void send(int type, String text, Fd... fds) throws IOException {
        send(type, text.getBytes(StandardCharsets.UTF_8), fds);
    }

    /** Sends one frame; more than {@value #MAX_FDS_PER_FRAME} fds go as several frames of the same type and payload. */
    void send(int type, byte[] payload, Fd... fds) throws IOException {
        if (payload.length > MAX_PAYLOAD) {
            throw new IOException("handover frame of " + payload.length + " bytes");
        }
        int from = 0;
        do {
            int n = Math.min(MAX_FDS_PER_FRAME, fds.length - from);
            int[] numbers = new int[n];
            for (int i = 0; i < n; i++) {
                numbers[i] = fds[from + i].get();
            }
            MemorySegment tx = io.txBuffer();
            tx.set(ValueLayout.JAVA_INT_UNALIGNED, 0, type);
            tx.set(ValueLayout.JAVA_INT_UNALIGNED, 4, payload.length);
            MemorySegment.copy(MemorySegment.ofArray(payload), 0, tx, HEADER, payload.length);
            long total = HEADER + payload.length;
            // A frame fits the socket buffer; EAGAIN means the peer stopped reading: wait a little.
            long deadline = System.nanoTime() + 10_000_000_000L;
            long sent = io.send(socket.get(), total, numbers);
            while (sent == -LibC.EAGAIN && System.nanoTime() < deadline) {
                sleepMillis(1);
                sent = io.send(socket.get(), total, numbers);
            }
            if (sent != total) {
                throw new IOException("handover peer gone: " + (sent < 0 ? Errno.name((int) -sent) : sent + " of " + total + " bytes sent"));
            }
            from += n;
        } while (from < fds.length);
    }

    /** The next frame, or an IOException when the peer closed, broke the framing or said nothing within {@code timeoutMillis}. */
    Frame receive(long timeoutMillis) throws IOException {
        long deadline = System.currentTimeMillis() + timeoutMillis;
        List<Fd> fds = new ArrayList<>();
        try {
            readFully(0, HEADER, deadline, fds);
            MemorySegment rx = io.rxBuffer();
            int type = rx.get(ValueLayout.JAVA_INT_UNALIGNED, 0);
            int length = rx.get(ValueLayout.JAVA_INT_UNALIGNED, 4);
            if (length < 0 || length > MAX_PAYLOAD) {
                throw new IOException("handover frame of " + length + " bytes");
            }
            readFully(HEADER, length, deadline, fds);
            byte[] payload = rx.asSlice(HEADER, length).toArray(ValueLayout.JAVA_BYTE);
            Frame f = new Frame(type, payload, fds.toArray(new Fd[0]));
            fds.clear();
            return f;
        } finally {
            fds.forEach(Fd::close);
        }
    }

    /** A frame of type {@code type}; an ABORT, anything else or nothing in time is an IOException. */
    Frame expect(int type, long timeoutMillis) throws IOException {
        Frame f = receive(timeoutMillis);
        if (f.type() == type) {
            return f;
        }
        Fd.closeAll(f.fds());
        throw new IOException(f.type() == ABORT ? f.text() : "unexpected handover frame " + f.type() + " (expected " + type + ")");
    }

    private void readFully(long offset, long length, long deadline, List<Fd> fds) throws IOException {
        long have = 0;
        while (have < length) {
            MessageIo.Received r = io.receive(socket.get(), offset + have, length - have, false);
            fds.addAll(List.of(r.fds()));
            if (r.bytes() == -LibC.EAGAIN) {
                long left = deadline - System.currentTimeMillis();
                if (left <= 0) {
                    throw new IOException("handover peer said nothing for too long");
                }
                epoll.await((int) Math.min(left, 1000));
                continue;
            }
            if (r.bytes() == 0) {
                throw new IOException("handover peer closed the connection");
            }
            if (r.bytes() < 0) {
                throw new IOException("handover receive failed: " + Errno.name((int) -r.bytes()));
            }
            have += r.bytes();
        }
    }

    private static void sleepMillis(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private boolean closed;

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        epoll.close();
        socket.close();
        io.close();
    }
}
