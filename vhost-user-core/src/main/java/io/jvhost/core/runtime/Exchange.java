package io.jvhost.core.runtime;

import io.jvhost.core.protocol.Message;
import io.jvhost.core.sys.Fd;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * One request from the frontend, while it is handled: the pollers' acknowledgements it waits for,
 * what runs once they are in, its reply, and the fds to close after the reply went out. Messages
 * are handled strictly one at a time, so at most one exchange is open per session.
 *
 * <p>Control thread only.
 */
final class Exchange {
    final Message message;
    private final Barrier barrier;
    private final List<Runnable> afterAcks = new ArrayList<>();
    private final List<Fd> toClose = new ArrayList<>();
    private byte[] reply;
    private int[] replyFds;
    private boolean failed;

    /** {@code settled} runs once the exchange is {@link #seal() sealed} and every poller has acknowledged. */
    Exchange(Message message, Consumer<Exchange> settled) {
        this.message = message;
        this.barrier = new Barrier(() -> settled.accept(this));
    }

    /** One more poller acknowledgement to wait for; the poller calls {@link #ack()}. */
    void expectAck() {
        barrier.expect();
    }

    void ack() {
        barrier.arrive();
    }

    /** Handling is done: no more acknowledgements will be expected. */
    void seal() {
        barrier.seal();
    }

    /** Runs {@code action} once the pollers have acknowledged, before the reply. */
    void afterAcks(Runnable action) {
        afterAcks.add(action);
    }

    /** Closes {@code fd} (if not null) after the reply: the pollers have let go of it by then. */
    void closeAfterReply(Fd fd) {
        if (fd != null) {
            toClose.add(fd);
        }
    }

    /** The request's own reply payload. */
    void reply(byte[] payload) {
        this.reply = payload;
    }

    /** A reply that carries {@code fd}; the fd is closed once sent (the peer has its copy). */
    void reply(byte[] payload, Fd fd) {
        this.reply = payload;
        this.replyFds = new int[] {fd.get()};
        toClose.add(fd);
    }

    byte[] reply() {
        return reply;
    }

    int[] replyFds() {
        return replyFds;
    }

    /** The request was refused: no reply of its own; an ack, if any, says so. */
    void fail() {
        failed = true;
        reply = null;
    }

    boolean failed() {
        return failed;
    }

    void runAfterAcks() {
        for (Runnable r : afterAcks) {
            r.run();
        }
    }

    void closeFds() {
        toClose.forEach(Fd::close);
    }
}
