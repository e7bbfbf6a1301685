package io.jvhost.core.transport;

import io.jvhost.core.protocol.Header;
import io.jvhost.core.protocol.Message;
import io.jvhost.core.protocol.ProtocolException;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.Session;
import io.jvhost.core.sys.Errno;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.MessageIo;
import io.netty.channel.IoEvent;
import io.netty.channel.IoRegistration;
import io.netty.channel.epoll.EpollIoHandle;
import io.netty.channel.epoll.EpollIoOps;
import io.netty.channel.unix.FileDescriptor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One frontend connection on the control loop: frames messages (the 12-byte header with any fds,
 * then exactly {@code size} payload bytes), hands them to its {@link Session} one at a time, and
 * sends replies. Anything that breaks the framing drops the connection; the process lives on.
 *
 * <p>Control thread only.
 */
final class Connection implements EpollIoHandle, Session.Output {
    private static final Logger LOG = LoggerFactory.getLogger(Connection.class);
    // Edge-triggered: while a message waits for the pollers nothing is read, and resume() reads on
    // until EAGAIN, so no readiness edge is lost.
    private static final EpollIoOps READ_OPS = EpollIoOps.EPOLLIN.with(EpollIoOps.EPOLLRDHUP).with(EpollIoOps.EPOLLET);
    private static final int MAX_FDS_PER_MESSAGE = 8;

    private final String name;
    private final Fd socket;
    private final FileDescriptor nettyFd;
    private final MessageIo io = new MessageIo(Header.SIZE + Header.MAX_PAYLOAD);
    private final Session session;
    private final Backend backend;
    private final Runnable onClosed;
    private final List<Fd> fds = new ArrayList<>();
    private IoRegistration registration;
    private int have;
    private int request, flags, size = -1;
    private boolean waiting;
    private boolean inReadLoop;
    private boolean closed;
    /** Live upgrade: nothing is read while paused (the predecessor's) or while the session is replayed (the successor's). */
    private boolean paused;
    private boolean replaying;

    Connection(String name, Fd socket, Backend backend, Runnable onClosed) {
        this.name = name;
        this.socket = socket;
        this.nettyFd = new FileDescriptor(socket.get());
        this.session = new Session(name, backend, this);
        this.backend = backend;
        this.onClosed = () -> {
            backend.configChangeSink(null);
            onClosed.run();
        };
        backend.configChangeSink(session::sendConfigChange);
    }

    Session session() {
        return session;
    }

    void registered(IoRegistration r) {
        this.registration = r;
        if (closed) {
            r.cancel();
            return;
        }
        r.submit(READ_OPS);
        LOG.info("{}: frontend connected", name);
        readMessages();
    }

    @Override
    public FileDescriptor fd() {
        return nettyFd;
    }

    @Override
    public void handle(IoRegistration r, IoEvent event) {
        readMessages();
    }

    private void readMessages() {
        inReadLoop = true;
        try {
            while (!waiting && !closed && !paused) {
                if (!readSome()) {
                    return;
                }
            }
        } finally {
            inReadLoop = false;
        }
    }

    /** Reads what the current frame still needs; false when nothing more can be read now. */
    private boolean readSome() {
        int want = size < 0 ? Header.SIZE - have : Header.SIZE + size - have;
        MessageIo.Received r = io.receive(socket.get(), have, want, false);
        fds.addAll(List.of(r.fds()));
        if (r.bytes() == -LibC.EAGAIN) {
            return false;
        }
        if (r.bytes() == 0) {
            drop("frontend closed the connection");
            return false;
        }
        if (r.bytes() < 0) {
            drop("recvmsg failed: " + Errno.name((int) -r.bytes()));
            return false;
        }
        if (fds.size() > MAX_FDS_PER_MESSAGE) {
            fault(fds.size() + " fds on one message");
            return false;
        }
        have += (int) r.bytes();
        MemorySegment buf = io.rxBuffer();
        if (size < 0 && have == Header.SIZE) {
            try {
                Header h = Header.decode(buf).checkRequest();
                request = h.request();
                flags = h.flags();
                size = (int) h.size();
            } catch (ProtocolException e) {
                fault(e.getMessage());
                return false;
            }
        }
        if (size >= 0 && have == Header.SIZE + size) {
            byte[] payload = buf.asSlice(Header.SIZE, size).toArray(ValueLayout.JAVA_BYTE);
            Message m = new Message(request, flags, payload, fds.toArray(new Fd[0]));
            fds.clear();
            have = 0;
            size = -1;
            waiting = true;
            session.handle(m, this::resume);
        }
        return true;
    }

    private void resume() {
        if (!waiting) {
            return;
        }
        waiting = false;
        if (closed) {
            return;
        }
        if (!inReadLoop) {
            readMessages();
        }
    }

    /**
     * Live upgrade: stops reading at a message boundary and pauses the session; {@code done} gets a
     * duplicate of the socket and the messages that rebuild the session, or null if the connection
     * is in the middle of a message (try again) or cannot be handed over.
     */
    void pause(java.util.function.Consumer<Paused> done) {
        if (closed || waiting || have > 0 || paused) {
            done.accept(null);
            return;
        }
        Fd dup;
        try {
            dup = socket.dup();
        } catch (io.jvhost.core.sys.NativeException e) {
            done.accept(null);
            return;
        }
        paused = true;
        session.pause(messages -> {
            if (messages == null) {
                dup.close();
                resumeReading();
                done.accept(null);
            } else {
                done.accept(new Paused(dup, messages));
            }
        });
    }

    /** A paused connection: a duplicate of its socket and the messages that rebuild its session. */
    record Paused(Fd socket, List<Message> messages) {}

    /**
     * The successor has taken over this paused connection: stops watching the socket and closes
     * this process's copy of it, its pending fds and buffers; the session (held, its queues stopped)
     * is left as it is, the process exits next. Control thread.
     */
    void letGo() {
        closed = true;
        if (registration != null) {
            registration.cancel();
        }
        socket.close();
        fds.forEach(Fd::close);
        fds.clear();
    }

    /** Serves again after {@link #pause}: the successor failed. */
    void resumeAfterPause() {
        session.resume();
        resumeReading();
    }

    /** The successor's side: rebuilds the session with nothing read from the frontend until {@link #start}. */
    void replay(List<Message> messages, java.util.function.Consumer<String> done) {
        paused = true;
        replaying = true;
        session.replay(messages, failure -> {
            replaying = false;
            done.accept(failure);
        });
    }

    /** Starts the queues and reads the frontend's messages: the predecessor has let go. */
    void start() {
        session.resume();
        resumeReading();
    }

    private void resumeReading() {
        paused = false;
        if (!inReadLoop && !waiting) {
            readMessages(); // edge-triggered: what arrived meanwhile sent its only edge already
        }
    }

    @Override
    public void reply(int request, byte[] payload, int[] replyFds) {
        if (closed || replaying) { // a replayed message's frontend has had its reply
            return;
        }
        MemorySegment tx = io.txBuffer();
        Header.encode(tx, request, Header.VERSION | Header.REPLY, payload.length);
        MemorySegment.copy(MemorySegment.ofArray(payload), 0, tx, Header.SIZE, payload.length);
        long total = Header.SIZE + payload.length;
        long n = io.send(socket.get(), total, replyFds);
        if (n != total) {
            drop("reply not sent: " + (n < 0 ? Errno.name((int) -n) : n + " of " + total + " bytes"));
        }
    }

    /** Drops the connection for breaking the message framing, and counts that against the frontend. */
    private void fault(String reason) {
        if (!closed) {
            backend.frontendFault(reason);
        }
        drop(reason);
    }

    @Override
    public void drop(String reason) {
        if (closed) {
            return;
        }
        closed = true;
        LOG.info("{}: connection closed: {}", name, reason);
        if (registration != null) {
            registration.cancel();
        }
        socket.close();
        fds.forEach(Fd::close);
        fds.clear();
        io.close();
        session.close(onClosed);
    }

    @Override
    public void close() {
        drop("shutting down");
    }

    /**
     * Runs {@link #drop} on the control thread for whatever connection {@code current} returns there;
     * waits and returns whether there was one. What both endpoints' {@code disconnect} do. Any thread
     * but the control thread.
     */
    static boolean dropOnControlThread(ControlLoop loop, java.util.function.Supplier<Connection> current, String reason) {
        java.util.concurrent.CompletableFuture<Boolean> dropped = new java.util.concurrent.CompletableFuture<>();
        loop.execute(() -> {
            Connection c = current.get();
            if (c != null) {
                c.drop(reason);
            }
            dropped.complete(c != null);
        });
        return dropped.join();
    }
}
