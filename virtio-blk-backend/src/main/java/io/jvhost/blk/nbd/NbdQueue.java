package io.jvhost.blk.nbd;

import io.jvhost.blk.BlockRequest;
import io.jvhost.blk.BlockStore;
import io.jvhost.core.sys.Epoll;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.StreamSocket;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicReference;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static io.jvhost.blk.nbd.Nbd.*;
import static io.jvhost.core.sys.StreamSocket.IOVEC_SIZE;
import static io.jvhost.core.sys.StreamSocket.IOV_BASE_OFFSET;
import static io.jvhost.core.sys.StreamSocket.IOV_LEN_OFFSET;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * One device queue of an {@link NbdStore} on an NBD connection of its own, which the queue's poller
 * drives with no thread in between: {@link #submit} writes the commands to the socket (a WRITE's
 * data straight from guest memory, gathered with iovecs), {@link #reap} reads the replies (a READ's
 * data into guest memory) and completes the requests, all on the poller, without blocking. Only
 * plain connections (TCP, Unix) of a server that allows several connections to one export
 * (NBD_FLAG_CAN_MULTI_CONN: a FLUSH on any covers the writes of all) get one; TLS stays on the
 * store's Netty loop.
 *
 * <p><b>Out.</b> Commands wait in order in a FIFO until the stage takes them: their 28-byte headers
 * go into one preallocated buffer, and an iovec array lists the headers and each WRITE's guest
 * segments in the order they go out. One {@code sendmsg} sends as much as the socket takes; a
 * partial send moves the iovecs on, and {@code EAGAIN} asks the poller to wake when the socket is
 * writable again. The stage is refilled once all of it has left.
 *
 * <p><b>In.</b> One {@code recvmsg} into a preallocated receive buffer takes as many replies as have
 * arrived; a READ's data that came with its header is copied from there into guest memory, the
 * rest of it is read straight into the guest's buffers (the receive buffer as the last iovec, for
 * what follows). Only simple replies are accepted (the store does not ask for structured ones); a
 * reply with a bad magic, or for a cookie not in flight on this connection, is a hostile or broken
 * server: the connection is dropped, the requests in flight on it fail with an I/O error (counted,
 * logged), and the queue reconnects for what comes next.
 *
 * <p><b>Outages.</b> When the server closes the connection or the socket fails, the requests stay,
 * and the store's loop reconnects (backoff as the store's own connection) and hands the new
 * socket over ({@link #offer}); the queue sends them all again. If the server stays away longer
 * than the store's timeout, the store's loop says so ({@link #timeoutExpired}) and the waiting
 * requests, and new ones until the server is back, fail with an I/O error.
 *
 * <p>The poller watches one fd ({@link #completionFd}): an epoll set of the socket and an eventfd
 * through which the store's loop wakes the queue. Poller thread only, except where a method says
 * otherwise. No allocation per request: commands, jobs, iovecs and buffers are kept for reuse.
 */
final class NbdQueue implements BlockStore.Queue {
    private static final Logger LOG = LoggerFactory.getLogger(NbdQueue.class);
    /** Headers the stage holds; bytes one receive takes at most. */
    static final int STAGE_HEADERS = 1024, IN_CAPACITY = 256 << 10;
    private static final int INITIAL_OPS = 256, INITIAL_IOVECS = 2 * STAGE_HEADERS, INITIAL_IN_IOVECS = 64;
    private static final long SOCKET = 1, WAKE = 2;

    /** A negotiated connection the store's loop hands to the queue. */
    record Connection(StreamSocket socket, NbdHandshake.Export export) {}

    private final NbdStore store;
    private final int index;
    private final String name;
    private final Arena arena = Arena.ofShared();
    private final Epoll events;
    private final Fd wake;
    private final AtomicReference<Connection> offered = new AtomicReference<>();
    /** The outage whose timeout expired (store's loop writes, poller reads). */
    private volatile int expiredOutage = -1;
    private volatile boolean up;
    private volatile boolean closed;
    volatile long reconnects, resent, protocolErrors;
    /** Sends the socket did not take whole, and replies that came in pieces (read again for the rest): plain counters. */
    long partialSends, partialReplies;

    // ---- poller only ----
    private StreamSocket socket;
    private int outage;
    private boolean failing;
    private int chunk;
    private int flagsOfExport;
    /** The commands: those not yet in the stage wait in its FIFO. */
    private final NbdOps ops;
    /** The stage: headers, and the iovecs of what goes out next ({@link #iovFirst} is the first not fully sent). */
    private final MemorySegment headers;
    private int headersLength;
    private MemorySegment iov;
    private int iovCapacity, iovFirst, iovCount;
    private boolean lastIovIsHeader;
    /** Bytes staged and bytes sent on this connection: an op is on the wire once its wireEnd is sent. */
    private long staged, sent;
    private boolean writableWanted;
    /** Receive buffer: bytes [inStart, inEnd) are unread. */
    private final MemorySegment in;
    private int inStart, inEnd;
    private MemorySegment inIov;
    private int inIovCapacity;
    /** The replies, and the READ whose data is arriving. */
    private final NbdReplies replies;
    /** Walks a WRITE's data as it is staged, and the rest of a READ's as its iovecs are set. */
    private final NbdCursor walk = new NbdCursor();
    private boolean everConnected;
    /** The next reap comes right after a submission: no reply can be there yet, so it does not read. */
    private boolean justSent;
    /** The store's loop: this connection's reconnect attempts (set by the store as it opens the queue). */
    NbdStore.Reconnect reconnect;

    NbdQueue(NbdStore store, int index, String target) throws NativeException {
        this.store = store;
        this.index = index;
        this.name = target + " queue " + index;
        Epoll e = new Epoll(4);
        Fd w = null;
        try {
            w = EventFd.create();
            int r = e.add(w.get(), WAKE, LibC.EPOLLIN);
            if (r < 0) {
                throw new NativeException("epoll_ctl", -r);
            }
        } catch (NativeException | RuntimeException ex) {
            if (w != null) {
                w.close();
            }
            e.close();
            arena.close();
            throw ex;
        }
        this.events = e;
        this.wake = w;
        this.headers = arena.allocate((long) STAGE_HEADERS * REQUEST_HEADER, 64);
        this.iov = arena.allocate(INITIAL_IOVECS * IOVEC_SIZE, 8);
        this.iovCapacity = INITIAL_IOVECS;
        this.in = arena.allocate(IN_CAPACITY, 4096);
        this.inIov = arena.allocate(INITIAL_IN_IOVECS * IOVEC_SIZE, 8);
        this.inIovCapacity = INITIAL_IN_IOVECS;
        this.ops = new NbdOps(LOG, name, INITIAL_OPS);
        this.replies = new NbdReplies(ops);
    }

    int index() {
        return index;
    }

    /** Requests failed because the server stayed away past the timeout. Any thread. */
    long failedOnTimeout() {
        return ops.failedOnTimeout;
    }

    /** Whether the queue has a connection now. Any thread. */
    boolean connected() {
        return up;
    }

    /** The epoll set of the socket and the wake-up eventfd. */
    @Override
    public int completionFd() {
        return events.fd();
    }

    // ---- from the store's loop --------------------------------------------------------------

    /** A new connection for the queue to use. Store's loop (or the control thread at open). */
    void offer(Connection c) {
        Connection old = offered.getAndSet(c);
        if (old != null) {
            old.socket().close(); // cannot happen: one reconnect at a time; never leak it
        }
        LibC.eventfdSignal(wake.get());
    }

    /** The server has been away for the timeout since outage {@code which} began. Store's loop. */
    void timeoutExpired(int which) {
        expiredOutage = which;
        LibC.eventfdSignal(wake.get());
    }

    // ---- submission -------------------------------------------------------------------------

    @Override
    public void submit(BlockRequest[] requests, int count) {
        for (int i = 0; i < count; i++) {
            BlockRequest r = requests[i];
            if (closed || failing) {
                r.complete(BlockRequest.STATUS_IOERR);
                continue;
            }
            try {
                ops.start(r, flagsOfExport, chunk);
            } catch (RuntimeException e) {
                LOG.error("{}: starting {} failed", name, r, e); // a bug: keep the poller alive
                r.complete(BlockRequest.STATUS_IOERR);
            }
        }
        if (socket != null && ops.hasWaiting()) {
            flushOut();
        }
        justSent = count > 0;
    }

    // ---- out --------------------------------------------------------------------------------

    /**
     * Stages what waits and sends the stage, until the FIFO is empty or the socket is full (then
     * the poller is asked to wake when it is writable). A failed send drops the connection.
     */
    private void flushOut() {
        while (socket != null) {
            for (NbdOp op; (op = ops.nextWaiting()) != null && stage(op); ) {
                ops.dequeue();
            }
            if (iovFirst == iovCount) {
                break;
            }
            long n = socket.writev(iov.address() + iovFirst * IOVEC_SIZE, iovCount - iovFirst);
            if (n == -LibC.EAGAIN || n == 0) {
                partialSends++;
                wantWritable(true);
                return;
            }
            if (n < 0) {
                lost("sending failed: errno " + -n);
                return;
            }
            if (n < staged - sent) {
                partialSends++;
            }
            sent += n;
            iovFirst = advance(iov, iovFirst, iovCount, n);
            if (iovFirst == iovCount) { // all of the stage left: start it again from the top
                iovFirst = iovCount = 0;
                headersLength = 0;
                lastIovIsHeader = false;
            }
        }
        if (writableWanted) {
            wantWritable(false);
        }
    }

    /** Puts {@code op} into the stage; false when it has no room now (it has once the stage is sent). */
    private boolean stage(NbdOp op) {
        int need = 1;
        BlockRequest r = op.job.request;
        if (op.command == CMD_WRITE) {
            need += r.segmentCount();
        }
        if (headersLength + REQUEST_HEADER > headers.byteSize() || iovCount + need > iovCapacity) {
            if (iovCount > 0) {
                return false;
            }
            growIovecs(need); // rare: one command with more segments than the array holds
        }
        long at = headersLength;
        writeRequest(headers, at, op.flags, op.command, op.cookie(), op.diskOffset, op.length);
        headersLength += REQUEST_HEADER;
        long base = headers.address() + at;
        if (lastIovIsHeader && iovCount > iovFirst) { // right after the previous header: one iovec for both
            long last = (iovCount - 1) * IOVEC_SIZE;
            iov.set(JAVA_LONG, last + IOV_LEN_OFFSET, iov.get(JAVA_LONG, last + IOV_LEN_OFFSET) + REQUEST_HEADER);
        } else {
            putIov(base, REQUEST_HEADER);
        }
        lastIovIsHeader = true;
        staged += REQUEST_HEADER;
        if (op.command == CMD_WRITE) {
            NbdCursor c = walk;
            for (c.start(op); c.more(); ) {
                long piece = c.room();
                putIov(c.memory().address() + c.offset(), piece);
                c.moved(piece);
            }
            lastIovIsHeader = false;
            staged += op.length;
        }
        op.wireEnd = staged;
        op.state = NbdOp.SENT;
        return true;
    }

    private void putIov(long address, long length) {
        long at = iovCount * IOVEC_SIZE;
        iov.set(JAVA_LONG, at + IOV_BASE_OFFSET, address);
        iov.set(JAVA_LONG, at + IOV_LEN_OFFSET, length);
        iovCount++;
    }

    private void growIovecs(int need) {
        int capacity = Math.max(need, 2 * iovCapacity);
        iov = arena.allocate(capacity * IOVEC_SIZE, 8);
        iovCapacity = capacity;
    }

    /**
     * Moves the iovecs {@code [first, count)} of {@code v} on by {@code done} bytes: skips those
     * filled, shortens the one it stopped in. Returns the new first unfinished one.
     */
    static int advance(MemorySegment v, int first, int count, long done) {
        long left = done;
        int i = first;
        while (left > 0 && i < count) {
            long at = i * IOVEC_SIZE;
            long len = v.get(JAVA_LONG, at + IOV_LEN_OFFSET);
            if (left >= len) {
                left -= len;
                i++;
            } else {
                v.set(JAVA_LONG, at + IOV_BASE_OFFSET, v.get(JAVA_LONG, at + IOV_BASE_OFFSET) + left);
                v.set(JAVA_LONG, at + IOV_LEN_OFFSET, len - left);
                left = 0;
            }
        }
        while (i < count && v.get(JAVA_LONG, i * IOVEC_SIZE + IOV_LEN_OFFSET) == 0) {
            i++;
        }
        return i;
    }

    /** Watches the socket for room to write too (true), or for input only. */
    private void wantWritable(boolean yes) {
        if (writableWanted == yes || socket == null) {
            return;
        }
        writableWanted = yes;
        int r = events.modify(socket.fd(), SOCKET, LibC.EPOLLIN | (yes ? LibC.EPOLLOUT : 0));
        if (r < 0) {
            LOG.warn("{}: epoll_ctl: errno {}", name, -r);
        }
    }

    // ---- in ---------------------------------------------------------------------------------

    @Override
    public int reap(int budget) {
        if (closed) {
            return 0;
        }
        int work = control();
        if (socket == null) {
            return work;
        }
        if (writableWanted || ops.hasWaiting()) {
            flushOut();
        }
        int done = 0;
        // A receive that returns less than it had room for emptied the socket: more input wakes
        // the poller (the socket's readiness reaches it through the epoll set), so no receive
        // is made just to hear EAGAIN. Nor right after a submission (the replies take longer).
        boolean drained = justSent;
        justSent = false;
        // Before the first receive, whether anything came at all: a receive that fails with EAGAIN
        // must be asked again for its errno, and that capture allocates (40 B) whenever escape
        // analysis misses it; epoll_wait on the queue's own set answers without errno.
        boolean checked = false;
        while (socket != null && done < budget && ops.live() > 0) {
            if (replies.reading != null) {
                if (inEnd > inStart) {
                    if (payloadFromBuffer()) {
                        done++;
                    }
                    continue;
                }
                if (drained || !checked && !(checked = socketReadable())) {
                    break;
                }
                partialReplies++;
                long want = replies.data.left + IN_CAPACITY;
                long n = readPayloadDirect();
                if (n == -LibC.EAGAIN) {
                    break;
                }
                if (n <= 0) {
                    lost(n == 0 ? "the server closed the connection" : "receiving failed: errno " + -n);
                    break;
                }
                drained = n < want;
                if (replies.complete()) {
                    replies.finishRead(mayFlush());
                    done++;
                }
                continue;
            }
            if (inEnd - inStart >= REPLY_HEADER) {
                if (!header()) {
                    break;
                }
                if (replies.reading == null) {
                    done++;
                }
                continue;
            }
            if (drained || !checked && !(checked = socketReadable())) {
                break;
            }
            if (inEnd > inStart) {
                partialReplies++; // a header in pieces
            }
            if (inStart > 0) { // keep the part of a header that came, at the top
                MemorySegment.copy(in, inStart, in, 0, inEnd - inStart);
                inEnd -= inStart;
                inStart = 0;
            }
            int room = IN_CAPACITY - inEnd;
            long n = socket.recv(in.address() + inEnd, room);
            if (n == -LibC.EAGAIN) {
                break;
            }
            if (n <= 0) {
                lost(n == 0 ? "the server closed the connection" : "receiving failed: errno " + -n);
                break;
            }
            inEnd += (int) n;
            drained = n < room;
        }
        if (socket != null && ops.hasWaiting()) {
            flushOut(); // FLUSHes that completed writes asked for
        }
        return work + done + (done >= budget ? 1 : 0);
    }

    /**
     * Whether the socket has input (or an end or error to report), by the queue's epoll set, which
     * watches it level-triggered: no receive that only says EAGAIN. The eventfd, if it is what is
     * ready, is for {@link #control}.
     */
    private boolean socketReadable() {
        int n = events.await(0);
        boolean readable = n < 0; // epoll_wait failed (EINTR): let the receive find out
        for (int i = 0; i < n; i++) {
            if (events.data(i) == SOCKET) {
                readable |= (events.mask(i) & (LibC.EPOLLIN | LibC.EPOLLERR | LibC.EPOLLHUP)) != 0;
            } else {
                LibC.eventfdDrain(wake.get()); // a wake-up control() has seen (it reads the state every reap) or will
            }
        }
        return readable;
    }

    /** Handles the reply header at inStart; false after a protocol violation (the connection is gone). */
    private boolean header() {
        String bad = replies.header(in.get(BE_INT, inStart), in.get(BE_INT, inStart + 4), in.get(BE_LONG, inStart + 8),
                sent, mayFlush());
        inStart += REPLY_HEADER;
        if (bad != null) {
            violation(bad);
            return false;
        }
        return true;
    }

    /** Copies what the receive buffer holds of the READ's data; true when the READ is complete. */
    private boolean payloadFromBuffer() {
        inStart += replies.copyIn(in, inStart, inEnd - inStart);
        if (replies.complete()) {
            replies.finishRead(mayFlush());
            return true;
        }
        return false;
    }

    /**
     * Reads the rest of the READ's data straight into guest memory, and whatever follows into the
     * (empty) receive buffer. Returns the bytes read or -errno.
     */
    private long readPayloadDirect() {
        NbdCursor p = replies.data;
        NbdCursor c = walk;
        int n = 0;
        for (c.copyOf(p); c.more(); n++) {
            if (n + 2 > inIovCapacity) {
                int capacity = 2 * inIovCapacity;
                MemorySegment bigger = arena.allocate(capacity * IOVEC_SIZE, 8);
                MemorySegment.copy(inIov, 0, bigger, 0, n * IOVEC_SIZE);
                inIov = bigger;
                inIovCapacity = capacity;
            }
            long piece = c.room();
            long at = n * IOVEC_SIZE;
            inIov.set(JAVA_LONG, at + IOV_BASE_OFFSET, c.memory().address() + c.offset());
            inIov.set(JAVA_LONG, at + IOV_LEN_OFFSET, piece);
            c.moved(piece);
        }
        inStart = inEnd = 0;
        long at = n * IOVEC_SIZE;
        inIov.set(JAVA_LONG, at + IOV_BASE_OFFSET, in.address());
        inIov.set(JAVA_LONG, at + IOV_LEN_OFFSET, IN_CAPACITY);
        n++;
        long got = socket.readv(inIov.address(), n);
        if (got <= 0) {
            return got;
        }
        long intoGuest = Math.min(got, p.left);
        for (long m = intoGuest; m > 0; ) {
            long k = Math.min(p.room(), m);
            p.moved(k);
            m -= k;
        }
        inEnd = (int) (got - intoGuest);
        return got;
    }

    /** Whether a write's FLUSH may still go out (see {@link NbdOps#done}). */
    private boolean mayFlush() {
        return !failing && !closed;
    }

    // ---- connection -------------------------------------------------------------------------

    /** Takes a connection the store's loop offered, and a timeout it reported; returns 1 if either happened. */
    private int control() {
        int work = 0;
        if (offered.get() != null) {
            Connection c = offered.getAndSet(null);
            if (c != null) {
                LibC.eventfdDrain(wake.get());
                adopt(c);
                work = 1;
            }
        }
        if (socket == null && !failing && expiredOutage == outage && outage > 0) {
            LibC.eventfdDrain(wake.get());
            failing = true;
            int failed = ops.failAll(true);
            replies.reading = null;
            LOG.error("{}: unreachable for {} s: {} requests failed with an I/O error; still reconnecting", name,
                    store.options().timeout().toSeconds(), failed);
            work = 1;
        }
        return work;
    }

    private void adopt(Connection c) {
        if (closed) {
            c.socket().close();
            return;
        }
        StreamSocket s = c.socket();
        int r = events.add(s.fd(), SOCKET, LibC.EPOLLIN);
        if (r < 0) {
            LOG.error("{}: cannot watch the new connection: errno {}", name, -r);
            s.close();
            store.queueLost(this, outage);
            return;
        }
        boolean first = !everConnected;
        everConnected = true;
        flagsOfExport = c.export().flags();
        chunk = c.export().chunk();
        socket = s;
        writableWanted = false;
        iovFirst = iovCount = headersLength = 0;
        lastIovIsHeader = false;
        staged = sent = 0;
        inStart = inEnd = 0;
        replies.reading = null;
        failing = false;
        up = true;
        int n = ops.requeue(); // everything still live goes out again
        if (!first) {
            reconnects++;
            resent += n;
            LOG.info("{}: reconnected, {} commands sent again", name, n);
        }
        flushOut();
    }

    /** The connection is gone (closed, failed): keep the requests, let the store reconnect. */
    private void lost(String why) {
        if (!closed) {
            LOG.warn("{}: {}; {} commands in flight, reconnecting (I/O fails after {} s away)", name, why, ops.live(),
                    store.options().timeout().toSeconds());
        }
        dropSocket();
        if (!closed) {
            store.queueLost(this, outage);
        }
    }

    /** The server broke the protocol: fail what was in flight on the connection, then reconnect. */
    private void violation(String what) {
        protocolErrors++;
        LOG.error("{}: the server sent {}; dropping the connection and failing {} commands with an I/O error "
                + "({} protocol errors so far)", name, what, ops.live(), protocolErrors);
        dropSocket();
        ops.failAll(false);
        if (!closed) {
            store.queueLost(this, outage);
        }
    }

    private void dropSocket() {
        StreamSocket s = socket;
        socket = null;
        up = false;
        outage++;
        if (s != null) {
            events.remove(s.fd());
            s.close();
        }
        replies.reading = null;
        inStart = inEnd = 0;
        iovFirst = iovCount = headersLength = 0;
        writableWanted = false;
        ops.unsend();
    }

    /** Requests waiting in the queue (tests). Poller thread, or once it is idle. */
    int liveCommands() {
        return ops.live();
    }

    /**
     * Says goodbye to the server (NBD_CMD_DISC, if the socket takes it at once) and closes
     * everything. Control thread, once the poller no longer uses the queue.
     */
    void close() {
        if (closed) {
            return;
        }
        closed = true;
        StreamSocket s = socket;
        socket = null;
        up = false;
        if (s != null) {
            if (iovFirst == iovCount) {
                writeRequest(headers, 0, 0, CMD_DISC, 0, 0, 0);
                s.send(headers.address(), REQUEST_HEADER);
            }
            s.close();
        }
        Connection c = offered.getAndSet(null);
        if (c != null) {
            c.socket().close();
        }
        if (ops.live() > 0) {
            LOG.warn("{}: closing with {} commands in flight", name, ops.live());
        }
        events.close();
        wake.close();
        arena.close();
    }

    @Override
    public String toString() {
        return "NbdQueue[" + name + "]";
    }
}
