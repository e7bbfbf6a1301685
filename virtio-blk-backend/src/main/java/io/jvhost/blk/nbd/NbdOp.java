package io.jvhost.blk.nbd;

import org.slf4j.Logger;

import static io.jvhost.blk.nbd.Nbd.*;

/**
 * One NBD command in flight; its index in the owner's pool and its generation make the cookie.
 * Shared by the store's Netty path ({@link NbdStore}, loop only) and the queues' poller path
 * ({@link NbdQueue}, poller only); pooled and reused, never shared between threads.
 */
final class NbdOp {
    /** {@link #state}: in the pool; waiting to go out (or for a connection); written to the connection. */
    static final int FREE = 0, WAITING = 1, SENT = 2;

    final int index;
    int generation;
    NbdJob job;
    int command;
    int flags;
    long diskOffset;
    int length;
    /** READ/WRITE: where in the request's data this command's bytes start. */
    long dataOffset;
    /** FREE, WAITING or SENT; kept by {@link NbdOps}, but for SENT, which the owner sets as it sends. */
    int state;
    /** Poller path: where the command's last byte is in the connection's outgoing stream (Netty path: 0). */
    long wireEnd;

    NbdOp(int index) {
        this.index = index;
    }

    long cookie() {
        return (long) generation << 32 | index;
    }

    /**
     * Logs that this command failed with NBD error {@code error}: the first ten failures and then
     * every thousandth; {@code errors} is the owner's count, this one included. Still valid after
     * the command went back to the pool (its fields stay until it is reused).
     */
    void logFailed(Logger log, String who, int error, long errors) {
        if (errors <= 10 || errors % 1000 == 0) {
            log.warn("{}: {} of {} bytes at {} failed: {} ({} errors so far)", who, commandName(command), length,
                    diskOffset, errno(error), errors);
        }
    }
}
