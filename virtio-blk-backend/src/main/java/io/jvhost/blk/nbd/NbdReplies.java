package io.jvhost.blk.nbd;

import java.lang.foreign.MemorySegment;

import static io.jvhost.blk.nbd.Nbd.*;

/**
 * The replies on one connection, as both paths read them (the Netty path from its buffers, the
 * poller path from its receive buffer or straight off the socket): a header's checks, the command
 * its cookie names, and where the data of a successful READ goes in guest memory as it arrives (no
 * reassembly buffer). Only simple replies: the store does not ask for structured ones. The
 * connection's thread only; allocates nothing but the message of a protocol violation.
 */
final class NbdReplies {
    private final NbdOps ops;
    /** The READ whose data is arriving, or null; and where its next byte goes. */
    NbdOp reading;
    final NbdCursor data = new NbdCursor();

    NbdReplies(NbdOps ops) {
        this.ops = ops;
    }

    /**
     * Handles a reply header: a failed command or one without data is done at once (see
     * {@link NbdOps#done} for {@code mayFlush}), a READ's data is awaited. {@code sentBytes}: what
     * has left on the connection ({@link NbdOps#inFlight}). Returns null, or what the server did
     * wrong: the owner then drops the connection.
     */
    String header(int magic, int error, long cookie, long sentBytes, boolean mayFlush) {
        if (magic != SIMPLE_REPLY_MAGIC) {
            return magic == STRUCTURED_REPLY_MAGIC ? "a structured reply, which was not negotiated"
                    : "bad reply magic 0x" + Integer.toHexString(magic);
        }
        NbdOp op = ops.inFlight(cookie, sentBytes);
        if (op == null) {
            return "a reply for cookie 0x" + Long.toHexString(cookie) + ", which is not in flight";
        }
        if (op.command == CMD_READ && error == 0 && op.length > 0) {
            reading = op;
            data.start(op);
        } else {
            ops.done(op, error, mayFlush);
        }
        return null;
    }

    /**
     * Copies up to {@code available} bytes of the READ's data from {@code src} at {@code at} into
     * the current guest segment; returns how many ({@link NbdCursor#room} at most).
     */
    int copyIn(MemorySegment src, long at, long available) {
        int n = (int) Math.min(data.room(), available);
        MemorySegment.copy(src, at, data.memory(), data.offset(), n);
        data.moved(n);
        return n;
    }

    /** Whether the READ has all its data. */
    boolean complete() {
        return data.left == 0;
    }

    /** The READ has all its data ({@link #complete}): it is done. */
    void finishRead(boolean mayFlush) {
        NbdOp op = reading;
        reading = null;
        ops.done(op, 0, mayFlush);
    }
}
