package io.jvhost.blk.nbd;

import io.jvhost.blk.BlockRequest;
import io.jvhost.blk.BlockStore;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.StreamSocket;

import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.AbstractByteBufAllocator;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.PooledByteBufAllocator;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.IoEventLoop;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.epoll.EpollSocketChannel;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.channel.unix.UnixChannel;
import io.netty.handler.ssl.SslContext;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.GenericFutureListener;
import io.netty.util.concurrent.Promise;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BiConsumer;
import java.util.function.Consumer;
import java.util.function.ToLongFunction;

import org.jctools.queues.atomic.MpscAtomicArrayQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static io.jvhost.blk.nbd.Nbd.*;

/**
 * A disk on an NBD server (qemu-nbd, nbdkit, a storage appliance), reached over TCP or a Unix
 * socket, optionally with TLS.
 *
 * <p><b>Queues on their own connections.</b> On a plain connection to a server that allows several
 * connections to the export (NBD_FLAG_CAN_MULTI_CONN), each device queue ({@link #openQueue}) gets
 * a connection of its own, negotiated here and then driven by the queue's poller ({@link NbdQueue}):
 * no thread between the ring and the socket. The rest of this describes the store's own connection,
 * which serves TLS, servers without multi-conn, and requests given to {@link #submit} directly.
 *
 * <p>One Netty epoll event loop thread of the store's own does all the talking. {@link #submit}
 * only queues requests for it (a lock-free MPSC queue and, when the loop is not already on its
 * way, one wake-up); the loop turns each request into NBD commands, as many in flight as the
 * guest sends, matched to replies by cookie. Reads larger than the server's maximum payload are
 * split; durable writes carry FUA, or are followed by a FLUSH where the server has no FUA.
 *
 * <p>On a plain (TCP or Unix) connection nothing is allocated per request: the loop stages
 * commands, and a write's data copied out of guest memory, in one preallocated buffer and writes
 * it to the socket itself at each flush point, and the socket's reads land in one preallocated
 * buffer lent to Netty ({@link ReceiveBuffer}), from which a read's data is copied straight into
 * guest memory. Only what the socket does not take at once (a full socket buffer), and writes
 * larger than the staging buffer, go through Netty's outbound buffer, as pooled buffers. With TLS,
 * Netty's SslHandler needs buffers through the pipeline: each command is then a pooled buffer,
 * which costs a few hundred bytes of wrappers per request.
 *
 * <p>When the connection drops, every request in flight is kept and the store reconnects with
 * backoff (100 ms, doubling to 2 s), redoes the handshake and sends them again: the guest only
 * waits. If the server stays away longer than {@link Options#timeout()}, the waiting requests,
 * and new ones until it is back, complete with an I/O error; the store keeps reconnecting and
 * serves again once the server returns.
 */
public final class NbdStore implements BlockStore {
    private static final Logger LOG = LoggerFactory.getLogger(NbdStore.class);
    static final long FIRST_BACKOFF_MILLIS = 100, MAX_BACKOFF_MILLIS = 2000;
    /** Requests that can exist at once: 64 queues of 1024. */
    private static final int SUBMIT_CAPACITY = 1 << 16;
    private static final long CLOSE_FLUSH_SECONDS = 10;
    /** Plain connections: bytes of commands staged between flushes; bytes one socket read takes. */
    static final int OUT_CAPACITY = 256 << 10, IN_CAPACITY = 256 << 10;

    /**
     * How to reach the export.
     *
     * @param uri            the export
     * @param tlsDir         directory with ca-cert.pem (and client-cert.pem, client-key.pem); required
     *                       for nbds URIs, refused for plain ones
     * @param timeout        how long the server may be away before waiting requests fail
     * @param connectTimeout bound on one connection attempt (TCP connect, and the handshake)
     * @param readOnly       refuse writes even if the export takes them
     */
    public record Options(NbdUri uri, Path tlsDir, Duration timeout, Duration connectTimeout, boolean readOnly) {
        public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(30);
        public static final Duration DEFAULT_CONNECT_TIMEOUT = Duration.ofSeconds(10);

        public Options {
            if (timeout.isNegative() || connectTimeout.isNegative() || connectTimeout.isZero()) {
                throw new IllegalArgumentException("NBD timeouts must be positive");
            }
        }

        /** The export at {@code uri}, with the default timeouts. */
        public static Options of(NbdUri uri, Path tlsDir) {
            return new Options(uri, tlsDir, DEFAULT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, false);
        }

        public Options withTimeout(Duration t) {
            return new Options(uri, tlsDir, t, connectTimeout, readOnly);
        }

        public Options withConnectTimeout(Duration t) {
            return new Options(uri, tlsDir, timeout, t, readOnly);
        }

        public Options withReadOnly(boolean ro) {
            return new Options(uri, tlsDir, timeout, connectTimeout, ro);
        }
    }

    private final Options options;
    private final String target;
    private final SslContext ssl;
    private final MultiThreadIoEventLoopGroup group;
    private final IoEventLoop loop;
    private final Bootstrap bootstrap;
    private final MpscAtomicArrayQueue<BlockRequest> submitted = new MpscAtomicArrayQueue<>(SUBMIT_CAPACITY);
    private final AtomicBoolean drainScheduled = new AtomicBoolean();
    private final Runnable drainTask = this::drain;
    private volatile boolean closed;
    private volatile NbdHandshake.Export export;
    private volatile long size;
    private long reportedSize;
    private volatile boolean connectedNow;
    /** Completes when the connection is up again or requests fail for good ({@link #failing}); a new one at each loss. */
    private volatile CompletableFuture<Void> upOrFailing = new CompletableFuture<>();
    private volatile long reconnects, resent;
    /** The device queues that have a connection of their own (plain connections, multi-conn servers). */
    private final List<NbdQueue> queues = new CopyOnWriteArrayList<>();

    // ---- event loop only ----
    private Channel channel;
    /** The commands: those the connection has not taken yet wait in its FIFO. */
    private final NbdOps ops;
    /** System.nanoTime() when the connection went away; meaningful while {@link #channel} is null. */
    private long downSince;
    private long outage;
    private volatile boolean failing;
    private final Reconnect reconnect = new Reconnect("reconnect", () -> {
        if (channel == null) {
            connect(null);
        }
    });
    private int chunk;
    /** Plain connections (null with TLS): the staged commands, {@link #outLength} bytes of them. */
    private final MemorySegment out;
    private int outLength;
    /** Plain connections: writes of this connection in Netty's outbound buffer; nothing is staged while any are. */
    private int nettyWrites;
    private final GenericFutureListener<Future<Void>> nettyWritten = this::nettyWritten;
    /** Walks a WRITE's data as it is copied out. */
    private final NbdCursor writeData = new NbdCursor();
    /** Plain connections (null with TLS): the buffer every socket read lands in. */
    private final ReceiveBuffer receive;

    private NbdStore(Options options, SslContext ssl) {
        this.options = options;
        this.target = options.uri().toString();
        this.ssl = ssl;
        this.group = new MultiThreadIoEventLoopGroup(1,
                (java.util.concurrent.ThreadFactory) r -> Thread.ofPlatform().name("jvhost-nbd").daemon(true).unstarted(r),
                EpollIoHandler.newFactory());
        this.loop = (IoEventLoop) group.next();
        NbdUri uri = options.uri();
        this.bootstrap = new Bootstrap().group(group)
                .channel(uri.unix() ? EpollDomainSocketChannel.class : EpollSocketChannel.class)
                .option(ChannelOption.CONNECT_TIMEOUT_MILLIS, (int) options.connectTimeout().toMillis())
                // Pooled direct buffers hand out their NIO view without allocating (internalNioBuffer).
                .option(ChannelOption.ALLOCATOR, PooledByteBufAllocator.DEFAULT)
                .handler(new ChannelInitializer<Channel>() {
                    @Override
                    protected void initChannel(Channel ch) {
                        // the handshake is added per attempt, in connect()
                    }
                });
        if (!uri.unix()) {
            bootstrap.option(ChannelOption.TCP_NODELAY, true);
        }
        this.ops = new NbdOps(LOG, target, 256);
        // Memory the GC frees with the store: the loop may still touch it until it has stopped.
        this.out = ssl == null ? Arena.ofAuto().allocate(OUT_CAPACITY, 64) : null;
        this.receive = ssl == null ? new ReceiveBuffer(IN_CAPACITY) : null;
    }

    /**
     * Connects to {@code options.uri()} and negotiates the export; blocks until that worked or
     * failed. Throws {@link NbdException} with one line saying why: unreachable (within the connect
     * timeout), refused export, TLS trouble. Any thread.
     */
    public static NbdStore open(Options options) throws NbdException {
        NbdUri uri = options.uri();
        if (uri.tls() && options.tlsDir() == null) {
            throw new NbdException(uri + " uses TLS: give the credentials directory (--tls-dir DIR)");
        }
        if (!uri.tls() && options.tlsDir() != null) {
            throw new NbdException("a TLS directory was given but " + uri + " is not a TLS URI (use nbds:// or nbds+unix://)");
        }
        SslContext ssl = uri.tls() ? NbdTls.clientContext(options.tlsDir(), !uri.unix()) : null;
        NbdStore store = new NbdStore(options, ssl);
        CompletableFuture<Void> first = new CompletableFuture<>();
        store.loop.execute(() -> store.connect(first));
        try {
            first.get(3 * options.connectTimeout().toMillis() + 5000, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            store.shutdownLoop();
            throw e.getCause() instanceof NbdException n ? n
                    : new NbdException(store.target + ": " + NbdHandshake.describe(e.getCause()), e.getCause());
        } catch (TimeoutException e) {
            store.shutdownLoop();
            throw new NbdException(store.target + ": no answer within " + options.connectTimeout().toMillis() + " ms");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            store.shutdownLoop();
            throw new NbdException(store.target + ": interrupted while connecting");
        }
        NbdHandshake.Export e = store.export;
        LOG.info("{}: export of {} bytes, flags 0x{}, block sizes min {} preferred {} max payload {}", store.target,
                e.size(), Integer.toHexString(e.flags()), e.minBlock(), e.preferredBlock(), e.maxPayload());
        return store;
    }

    // ---- BlockStore ---------------------------------------------------------------------------

    @Override
    public long size() {
        return size;
    }

    /** True once after a reconnect found the export at a new size. */
    @Override
    public synchronized boolean refreshSize() {
        long now = size;
        boolean changed = now != reportedSize;
        reportedSize = now;
        return changed;
    }

    /** The server's minimum block size, at least 512. */
    @Override
    public int blockSize() {
        int min = export.minBlock();
        return min <= 512 || Integer.bitCount(min) != 1 || min > 65536 ? 512 : min;
    }

    @Override
    public boolean readOnly() {
        return options.readOnly() || export.has(FLAG_READ_ONLY);
    }

    @Override
    public boolean canFlush() {
        return export.has(FLAG_SEND_FLUSH);
    }

    @Override
    public boolean canDiscard() {
        return export.has(FLAG_SEND_TRIM);
    }

    @Override
    public boolean canWriteZeroes() {
        return export.has(FLAG_SEND_WRITE_ZEROES);
    }

    @Override
    public String id() {
        NbdUri uri = options.uri();
        String name = !uri.export().isEmpty() ? uri.export()
                : uri.unix() ? String.valueOf(uri.socket().getFileName()) : uri.host();
        return name.length() > 20 ? name.substring(name.length() - 20) : name;
    }

    /** Poller threads: queues the requests for the NBD loop and wakes it. Never blocks, allocates nothing. */
    @Override
    public void submit(BlockRequest[] requests, int count) {
        if (closed) {
            for (int i = 0; i < count; i++) {
                requests[i].complete(BlockRequest.STATUS_IOERR);
            }
            return;
        }
        for (int i = 0; i < count; i++) {
            while (!submitted.offer(requests[i])) {
                Thread.onSpinWait(); // cannot stay full: it holds every request that can exist
            }
        }
        if (!drainScheduled.get() && drainScheduled.compareAndSet(false, true)) {
            loop.execute(drainTask);
        }
    }

    /** Whether a connection is up and negotiated. Any thread. */
    public boolean connected() {
        if (!connectedNow) {
            return false;
        }
        for (NbdQueue q : queues) {
            if (!q.connected()) {
                return false;
            }
        }
        return true;
    }

    /** Connections made after the first. Any thread. */
    public long reconnects() {
        return reconnects + sum(q -> q.reconnects);
    }

    /** Commands sent again on a new connection. Any thread. */
    public long resent() {
        return resent + sum(q -> q.resent);
    }

    /** Requests failed because the server stayed away past the timeout. Any thread. */
    public long failedOnTimeout() {
        return ops.failedOnTimeout + sum(NbdQueue::failedOnTimeout);
    }

    /** Replies that broke the protocol (bad magic, unknown cookie) on the queues' connections. Any thread. */
    public long protocolErrors() {
        return sum(q -> q.protocolErrors);
    }

    /**
     * Diagnostics of the queues' connections: sends the socket did not take whole (the rest went
     * when it had room), and replies that arrived in pieces. Read while the pollers run, roughly.
     */
    public long partialSends() {
        return sum(q -> q.partialSends);
    }

    /** See {@link #partialSends()}. */
    public long partialReplies() {
        return sum(q -> q.partialReplies);
    }

    /** One counter summed over the queues' connections (diagnostics, read while they run). */
    private long sum(ToLongFunction<NbdQueue> counter) {
        long n = 0;
        for (NbdQueue q : queues) {
            n += counter.applyAsLong(q);
        }
        return n;
    }

    /** How many device queues have a connection of their own, driven by their pollers. Any thread. */
    public int queueConnections() {
        return queues.size();
    }

    public Options options() {
        return options;
    }

    /**
     * Flushes the server's cache (when it has one) and disconnects politely, then stops the event
     * loop; requests still waiting complete with an I/O error. Throws if the final flush fails or
     * cannot be sent. Call once nothing submits any more; closing again does nothing.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        // Closed while reconnecting (the server just came back): give the reconnect a moment, so the
        // final flush goes out instead of reporting writes as possibly lost.
        if (!connectedNow && !failing) {
            try {
                upOrFailing.get(Math.min(options.timeout().toNanos(), TimeUnit.SECONDS.toNanos(5)), TimeUnit.NANOSECONDS);
            } catch (TimeoutException | ExecutionException e) {
                // still away: close as it is
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        closed = true;
        CompletableFuture<Integer> flushed = new CompletableFuture<>();
        loop.execute(() -> beginClose(flushed));
        String problem = null;
        try {
            int status = flushed.get(CLOSE_FLUSH_SECONDS, TimeUnit.SECONDS);
            if (status != BlockRequest.STATUS_OK) {
                problem = "the final flush of " + target + " failed";
            }
        } catch (TimeoutException e) {
            problem = "the final flush of " + target + " got no answer in " + CLOSE_FLUSH_SECONDS + " s";
        } catch (ExecutionException e) {
            problem = "closing " + target + ": " + NbdHandshake.describe(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            problem = "interrupted while closing " + target;
        }
        CompletableFuture<Void> gone = new CompletableFuture<>();
        loop.execute(() -> finishClose(gone));
        try {
            gone.get(5, TimeUnit.SECONDS);
        } catch (Exception e) {
            LOG.warn("{}: disconnect did not finish: {}", target, e.toString());
        }
        shutdownLoop();
        for (NbdQueue q : queues) {
            q.close();
        }
        if (problem != null) {
            throw new IllegalStateException(problem);
        }
        LOG.info("{}: flushed and disconnected", target);
    }

    @Override
    public String toString() {
        return "NbdStore[" + target + "]";
    }

    private void shutdownLoop() {
        group.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
    }

    /**
     * Device queue {@code index}'s way in. On a plain connection to a server that allows several
     * connections to the export (NBD_FLAG_CAN_MULTI_CONN), the queue gets a connection of its own
     * that its poller drives ({@link NbdQueue}: no thread hop per request); it is negotiated here,
     * blocking for at most the connect timeout. Otherwise, with TLS, with the system property
     * {@code jvhost.nbd.queue-connections=false}, or if that connection cannot be made (logged),
     * the queue's requests go to the store's loop ({@link #submit}). Without multi-conn the store
     * keeps to its one connection: a FLUSH on one connection need not cover writes made on
     * another, and such servers (qemu-nbd without --shared) often take only one client anyway.
     * Control thread.
     */
    @Override
    public Queue openQueue(int index) {
        NbdHandshake.Export e = export;
        if (ssl != null || closed || e == null || !e.has(FLAG_CAN_MULTI_CONN)
                || !Boolean.parseBoolean(System.getProperty("jvhost.nbd.queue-connections", "true"))) {
            if (ssl == null && e != null && !e.has(FLAG_CAN_MULTI_CONN) && index == 0) {
                LOG.info("{}: the server does not allow several connections (no NBD_FLAG_CAN_MULTI_CONN): "
                        + "every queue goes through the store's one connection", target);
            }
            return BlockStore.super.openQueue(index);
        }
        NbdQueue q;
        try {
            q = new NbdQueue(this, index, target);
        } catch (NativeException ex) {
            LOG.warn("{}: queue {} goes through the store's connection: {}", target, index, ex.getMessage());
            return BlockStore.super.openQueue(index);
        }
        q.reconnect = new Reconnect("reconnecting queue " + index, () -> connectQueue(q, null));
        CompletableFuture<NbdQueue.Connection> first = new CompletableFuture<>();
        loop.execute(() -> connectQueue(q, first));
        try {
            q.offer(first.get(3 * options.connectTimeout().toMillis() + 5000, TimeUnit.MILLISECONDS));
        } catch (ExecutionException | TimeoutException | InterruptedException ex) {
            if (ex instanceof InterruptedException) {
                Thread.currentThread().interrupt();
            }
            Throwable why = ex instanceof ExecutionException ? ex.getCause() : ex;
            LOG.warn("{}: no connection of its own for queue {} ({}); it goes through the store's connection",
                    target, index, NbdHandshake.describe(why));
            q.close();
            return BlockStore.super.openQueue(index);
        }
        queues.add(q);
        return q;
    }

    /**
     * One connection attempt for queue {@code q}: the handshake on this loop, then the socket is
     * duplicated out of Netty's channel, which is closed, and handed to the queue (nothing is
     * lost: the server sends nothing until the queue's first command). {@code first}: the attempt
     * at open time, null for a reconnect (which retries with backoff). Loop.
     */
    private void connectQueue(NbdQueue q, CompletableFuture<NbdQueue.Connection> first) {
        connectAndNegotiate(null, (ch, e) -> handOver(q, ch, e, first), why -> q.reconnect.failed(first, why));
    }

    private void handOver(NbdQueue q, Channel ch, NbdHandshake.Export e, CompletableFuture<NbdQueue.Connection> first) {
        StreamSocket s;
        try {
            ch.config().setAutoRead(false);
            s = StreamSocket.duplicate(((UnixChannel) ch).fd().intValue());
        } catch (NativeException | RuntimeException ex) {
            ch.close();
            q.reconnect.failed(first, "cannot take over the socket: " + ex.getMessage());
            return;
        }
        ch.close(); // Netty's fd only: the connection lives on in s
        if (closed && first == null) {
            s.close();
            return;
        }
        q.reconnect.succeeded();
        NbdQueue.Connection c = new NbdQueue.Connection(s, e);
        if (first != null) {
            first.complete(c);
        } else {
            q.offer(c);
        }
    }

    /**
     * Queue {@code q} lost its connection (outage number {@code which}): reconnect it with backoff,
     * and tell it when the timeout has passed. Its poller thread.
     */
    void queueLost(NbdQueue q, int which) {
        if (closed) {
            return;
        }
        try {
            loop.execute(() -> {
                if (closed) {
                    return;
                }
                loop.schedule(() -> q.timeoutExpired(which), options.timeout().toNanos(), TimeUnit.NANOSECONDS);
                q.reconnect.schedule();
            });
        } catch (java.util.concurrent.RejectedExecutionException e) {
            // the store is closing
        }
    }

    // ---- connecting (loop) --------------------------------------------------------------------

    /** The server's address: its socket path, or its host (resolved at connect time) and port. */
    private static SocketAddress address(NbdUri uri) {
        return uri.unix() ? new DomainSocketAddress(uri.socket().toString())
                : InetSocketAddress.createUnresolved(uri.host(), uri.port());
    }

    /** One connection attempt; {@code first} is the initial one's outcome, null for reconnects. */
    private void connect(CompletableFuture<Void> first) {
        connectAndNegotiate(ssl, (ch, e) -> connected(ch, e, first), why -> reconnect.failed(first, why));
    }

    /**
     * Connects to the server and runs the handshake (with TLS if {@code tls} is given), for the
     * store's connection and the queues' alike: {@code ok} then gets the channel and the export,
     * or {@code failed} one line saying why (the channel is closed). Loop.
     */
    private void connectAndNegotiate(SslContext tls, BiConsumer<Channel, NbdHandshake.Export> ok, Consumer<String> failed) {
        NbdUri uri = options.uri();
        Promise<NbdHandshake.Export> negotiated = loop.newPromise();
        ChannelFuture cf;
        try {
            cf = bootstrap.clone().handler(new ChannelInitializer<Channel>() {
                @Override
                protected void initChannel(Channel ch) {
                    String tlsHost = tls == null || uri.unix() ? null : uri.host();
                    ch.pipeline().addLast("handshake", new NbdHandshake(uri.export(), tls, tlsHost, uri.port(),
                            options.connectTimeout().toMillis(), negotiated));
                }
            }).connect(address(uri));
        } catch (RuntimeException e) {
            failed.accept("cannot connect: " + NbdHandshake.describe(e));
            return;
        }
        cf.addListener(f -> {
            if (!f.isSuccess()) {
                negotiated.tryFailure(new NbdException("cannot connect: " + connectError(f.cause())));
            }
        });
        negotiated.addListener(f -> {
            if (f.isSuccess()) {
                ok.accept(cf.channel(), negotiated.getNow());
            } else {
                cf.channel().close();
                failed.accept(NbdHandshake.describe(f.cause()));
            }
        });
    }

    private String connectError(Throwable t) {
        if (t instanceof java.io.FileNotFoundException) { // Netty's ENOENT on a Unix socket path
            return "No such file or directory: " + options.uri().socket();
        }
        String m = NbdHandshake.describe(t);
        // Netty's native errors read "connect(..) failed: Connection refused: /127.0.0.1:1"
        int at = m.indexOf("failed: ");
        if (at >= 0) {
            m = m.substring(at + "failed: ".length());
        }
        return m;
    }

    /**
     * The reconnect attempts of one connection (the store's own, or a queue's): a failed one is
     * tried again after 100 ms, doubling to 2 s, and from 100 ms again once connected. Loop only.
     */
    final class Reconnect {
        private final String what;
        private final Runnable attempt;
        private long delayMillis = FIRST_BACKOFF_MILLIS;

        /** {@code what} names the attempts in the log; {@code attempt} makes one. */
        Reconnect(String what, Runnable attempt) {
            this.what = what;
            this.attempt = attempt;
        }

        void succeeded() {
            delayMillis = FIRST_BACKOFF_MILLIS;
        }

        /** Makes an attempt after the delay (unless the store is closed by then); the next waits twice as long. */
        void schedule() {
            long delay = delayMillis;
            delayMillis = Math.min(2 * delayMillis, MAX_BACKOFF_MILLIS);
            loop.schedule(() -> {
                if (!closed) {
                    attempt.run();
                }
            }, delay, TimeUnit.MILLISECONDS);
        }

        /**
         * An attempt failed with {@code why}: the first one ({@code first}, from open) fails with
         * it; a reconnect is logged (at the first delay and the longest, not at each doubling) and
         * tried again.
         */
        void failed(CompletableFuture<?> first, String why) {
            if (first != null) {
                first.completeExceptionally(new NbdException(target + ": " + why));
                return;
            }
            if (closed) {
                return;
            }
            if (delayMillis == FIRST_BACKOFF_MILLIS || delayMillis == MAX_BACKOFF_MILLIS) {
                LOG.info("{}: {} failed ({}); next try in {} ms", target, what, why, delayMillis);
            }
            schedule();
        }
    }

    private void connected(Channel ch, NbdHandshake.Export e, CompletableFuture<Void> first) {
        if (closed && first == null) {
            ch.close();
            return;
        }
        NbdHandshake.Export before = export;
        if (e.size() < 512) {
            ch.close();
            reconnect.failed(first, "the export has " + e.size() + " bytes, less than one sector");
            return;
        }
        if (before != null && (before.flags() & ~e.flags() & (FLAG_SEND_FLUSH | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES)) != 0) {
            LOG.warn("{}: the export came back with fewer capabilities (flags 0x{} were 0x{}); commands it no longer takes will fail",
                    target, Integer.toHexString(e.flags()), Integer.toHexString(before.flags()));
        }
        export = e;
        chunk = e.chunk();
        long newSize = e.size() & ~511L;
        if (before != null && newSize != size) {
            LOG.warn("{}: the export is now {} bytes (was {})", target, newSize, size);
        }
        size = newSize;
        if (first != null) {
            reportedSize = newSize;
        }
        channel = ch;
        connectedNow = true;
        upOrFailing.complete(null);
        outLength = 0;
        nettyWrites = 0;
        if (receive != null) {
            ch.config().setAllocator(receive);
        }
        reconnect.succeeded();
        ch.pipeline().addLast("replies", new Replies(ch));
        ch.closeFuture().addListener(f -> disconnected(ch));
        if (first != null) {
            first.complete(null);
        } else {
            reconnects++;
            long down = (System.nanoTime() - downSince) / 1_000_000;
            int n = ops.requeue();
            sendWaiting();
            resent += n;
            flushOut(ch);
            LOG.info("{}: reconnected after {} ms, {} commands sent again", target, down, n);
        }
        failing = false;
        drain(); // whatever queued meanwhile
    }

    private void disconnected(Channel ch) {
        if (ch != channel) {
            return;
        }
        channel = null;
        upOrFailing = new CompletableFuture<>(); // before connectedNow, so a close that sees it false waits on this one
        connectedNow = false;
        ops.unsend();
        if (closed) {
            return;
        }
        downSince = System.nanoTime();
        long thisOutage = ++outage;
        LOG.warn("{}: connection lost with {} commands in flight; reconnecting (I/O fails after {} s away)",
                target, ops.live(), options.timeout().toSeconds());
        loop.schedule(() -> timeoutExpired(thisOutage), options.timeout().toNanos(), TimeUnit.NANOSECONDS);
        reconnect.schedule();
    }

    /** The server has been away for the whole timeout: fail what waits, and new requests until it is back. */
    private void timeoutExpired(long whichOutage) {
        if (whichOutage != outage || channel != null || closed) {
            return;
        }
        failing = true;
        upOrFailing.complete(null);
        int failed = ops.failAll(true);
        LOG.error("{}: unreachable for {} s: {} requests failed with an I/O error; still reconnecting",
                target, options.timeout().toSeconds(), failed);
    }

    private void beginClose(CompletableFuture<Integer> flushed) {
        drain(); // fails whatever was queued (closed is set)
        Channel ch = channel;
        if (ch == null) {
            int failed = ops.failAll(false);
            boolean writable = export != null && !readOnly() && canFlush();
            if (failed > 0 || writable) {
                flushed.completeExceptionally(new NbdException("the server is away; writes since its last flush may be lost"));
            } else {
                flushed.complete(BlockRequest.STATUS_OK);
            }
            return;
        }
        if (!canFlush() || readOnly()) {
            flushed.complete(BlockRequest.STATUS_OK);
            return;
        }
        NbdJob j = ops.takeJob();
        j.internal = flushed;
        ops.add(j, CMD_FLUSH, 0, 0, 0, 0);
        sendWaiting();
        flushOut(ch);
    }

    private void finishClose(CompletableFuture<Void> gone) {
        Channel ch = channel;
        // Detached first: a reply still arriving (a READ's data) is then dropped by the ch == channel
        // guard instead of being copied into a request that failAll has just completed.
        channel = null;
        connectedNow = false;
        ops.failAll(false);
        if (ch == null) {
            gone.complete(null);
            return;
        }
        flushOut(ch);
        ByteBuf b = PooledByteBufAllocator.DEFAULT.directBuffer(REQUEST_HEADER);
        b.writeInt(REQUEST_MAGIC).writeShort(0).writeShort(CMD_DISC).writeLong(0).writeLong(0).writeInt(0);
        ch.writeAndFlush(b).addListener(f -> ch.close().addListener(g -> gone.complete(null)));
    }

    // ---- requests (loop) ----------------------------------------------------------------------

    private void drain() {
        drainScheduled.set(false);
        for (BlockRequest r; (r = submitted.poll()) != null; ) {
            start(r);
        }
        Channel ch = channel;
        if (ch != null) {
            sendWaiting();
            flushOut(ch);
        }
    }

    private void start(BlockRequest r) {
        if (closed || failing) {
            r.complete(BlockRequest.STATUS_IOERR);
            return;
        }
        ops.start(r, export.flags(), chunk);
    }

    /** Hands the commands in the FIFO to the connection, oldest first; without one they wait for the next. */
    private void sendWaiting() {
        for (NbdOp op; channel != null && (op = ops.nextWaiting()) != null; ) {
            ops.dequeue();
            send(op);
        }
    }

    /** Whether a write's FLUSH may still go out (see {@link NbdOps#done}). */
    private boolean mayFlush() {
        return !failing && !closed;
    }

    /**
     * Queues the command (and a WRITE's data, copied out of guest memory) for the connection, to
     * go out at the next {@link #flushOut}: staged in {@link #out} on a plain connection, else
     * written to the channel unflushed.
     */
    private void send(NbdOp op) {
        Channel ch = channel;
        if (ch == null) {
            return;
        }
        op.state = NbdOp.SENT;
        int need = REQUEST_HEADER + (op.command == CMD_WRITE ? op.length : 0);
        if (out != null && need <= OUT_CAPACITY) {
            if (need > OUT_CAPACITY - outLength) {
                writeOut(ch);
            }
            if (nettyWrites == 0 && channel == ch) {
                stage(op);
                return;
            }
        }
        if (out != null) {
            writeOut(ch); // keeps the order: what is staged goes first
            if (channel != ch) {
                return;
            }
            nettyWrites++;
            ch.write(commandBuffer(op)).addListener(nettyWritten);
        } else {
            ch.write(commandBuffer(op), ch.voidPromise());
        }
    }

    private void stage(NbdOp op) {
        long at = outLength;
        writeRequest(out, at, op.flags, op.command, op.cookie(), op.diskOffset, op.length);
        at += REQUEST_HEADER;
        if (op.command == CMD_WRITE) {
            at = copyWriteData(op, out, at);
        }
        outLength = (int) at;
    }

    /** Copies a WRITE's data out of guest memory to {@code dst} at {@code at}; returns where it ends. */
    private long copyWriteData(NbdOp op, MemorySegment dst, long at) {
        NbdCursor c = writeData;
        for (c.start(op); c.more(); ) {
            long piece = c.room();
            MemorySegment.copy(c.memory(), c.offset(), dst, at, piece);
            at += piece;
            c.moved(piece);
        }
        return at;
    }

    /** The command (and a WRITE's data) in a pooled buffer, for Netty's pipeline. */
    private ByteBuf commandBuffer(NbdOp op) {
        boolean write = op.command == CMD_WRITE;
        ByteBuf b = PooledByteBufAllocator.DEFAULT.directBuffer(REQUEST_HEADER + (write ? op.length : 0));
        b.writeInt(REQUEST_MAGIC).writeShort(op.flags).writeShort(op.command).writeLong(op.cookie())
                .writeLong(op.diskOffset).writeInt(op.length);
        if (write) { // through one segment over the buffer's data area: no wrapper per guest segment
            int w = b.writerIndex();
            b.writerIndex(w + (int) copyWriteData(op, MemorySegment.ofBuffer(b.internalNioBuffer(w, op.length)), 0));
        }
        return b;
    }

    /** Sends what was queued for {@code ch}: the staged bytes, and whatever waits in Netty's outbound buffer. */
    private void flushOut(Channel ch) {
        if (out == null) {
            ch.flush();
            return;
        }
        if (outLength > 0) {
            writeOut(ch);
        }
        if (nettyWrites > 0 && channel == ch) {
            ch.flush();
        }
    }

    /**
     * Writes the staged bytes to {@code ch}'s socket (non-blocking); what it does not take goes, as
     * a copy, into Netty's outbound buffer, which waits for the socket to drain and keeps the order.
     * A failed write closes the connection (the commands are sent again on the next).
     */
    private void writeOut(Channel ch) {
        int at = 0;
        if (nettyWrites == 0) {
            try {
                var fd = ((UnixChannel) ch).fd();
                while (at < outLength) {
                    int n = fd.writeAddress(out.address(), at, outLength);
                    if (n <= 0) {
                        break; // EAGAIN
                    }
                    at += n;
                }
            } catch (IOException e) {
                outLength = 0;
                if (!closed) {
                    LOG.warn("{}: connection error: {}", target, NbdHandshake.describe(e));
                }
                ch.close();
                return;
            }
        }
        if (at < outLength) {
            int rest = outLength - at;
            ByteBuf b = PooledByteBufAllocator.DEFAULT.directBuffer(rest);
            MemorySegment.copy(out, at, MemorySegment.ofBuffer(b.internalNioBuffer(0, rest)), 0, rest);
            b.writerIndex(rest);
            nettyWrites++;
            ch.write(b).addListener(nettyWritten);
        }
        outLength = 0;
    }

    private void nettyWritten(Future<Void> f) {
        if (((ChannelFuture) f).channel() == channel) {
            nettyWrites--;
        }
    }

    /**
     * Simple replies on one connection: a 16-byte header, and for a successful READ its data,
     * copied into guest memory as it arrives (no reassembly buffer). Loop only.
     */
    private final class Replies extends ChannelInboundHandlerAdapter {
        private final Channel ch;
        private final byte[] header = new byte[REPLY_HEADER];
        private final ByteBuffer headerView = ByteBuffer.wrap(header);
        private int headerHave;
        private final NbdReplies replies = new NbdReplies(ops);

        Replies(Channel ch) {
            this.ch = ch;
        }

        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            ByteBuf in = (ByteBuf) msg;
            try {
                while (in.isReadable() && ch == channel) {
                    if (replies.reading != null) {
                        payload(in);
                        continue;
                    }
                    boolean complete;
                    if (headerHave == 0 && in.readableBytes() >= REPLY_HEADER) { // the usual case: no copy
                        headerView.putInt(0, in.readInt()).putInt(4, in.readInt()).putLong(8, in.readLong());
                        complete = true;
                    } else { // a header split between reads
                        while (headerHave < REPLY_HEADER && in.isReadable()) {
                            header[headerHave++] = in.readByte();
                        }
                        complete = headerHave == REPLY_HEADER;
                    }
                    if (complete) {
                        headerHave = 0;
                        if (!reply()) {
                            return;
                        }
                    }
                }
            } finally {
                in.release();
            }
        }

        /** Handles a complete header; false after a protocol violation (the connection is then dropped). */
        private boolean reply() {
            // The Netty path does not count the bytes sent: a sent command's reply may come at any time.
            String bad = replies.header(headerView.getInt(0), headerView.getInt(4), headerView.getLong(8), Long.MAX_VALUE,
                    mayFlush());
            return bad == null || violation(bad);
        }

        private void payload(ByteBuf in) {
            int n = (int) Math.min(replies.data.room(), in.readableBytes());
            int at = in.readerIndex();
            if (receive != null && in == receive.buf) { // plain connection: the one receive buffer
                replies.copyIn(receive.memory, at, n);
            } else if (in.nioBufferCount() == 1) {
                replies.copyIn(MemorySegment.ofBuffer(in.internalNioBuffer(at, n)), 0, n);
            } else {
                for (ByteBuffer part : in.nioBuffers(at, n)) {
                    replies.copyIn(MemorySegment.ofBuffer(part), 0, part.remaining());
                }
            }
            in.skipBytes(n);
            if (replies.complete()) {
                replies.finishRead(mayFlush());
            }
        }

        /** Sends what replies queued (a FLUSH after writes, where the server has no FUA). */
        @Override
        public void channelReadComplete(ChannelHandlerContext ctx) {
            if (ch == channel) {
                sendWaiting();
                flushOut(ch);
            }
        }

        private boolean violation(String what) {
            LOG.error("{}: the server sent {}; dropping the connection", target, what);
            ch.close();
            return false;
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            if (!closed) {
                LOG.warn("{}: connection error: {}", target, NbdHandshake.describe(cause));
            }
            ch.close();
        }
    }

    /**
     * Lends a plain connection's socket reads one preallocated buffer, in place of a pooled buffer
     * (and its wrapper object) per read: {@link Replies} consumes each read before the loop makes
     * the next, so one suffices, and a read's data is copied into guest memory from {@link #memory},
     * a segment made once. Netty asks for read buffers as direct ones; any other request, or one
     * while the buffer is out, is served from the pool.
     */
    private static final class ReceiveBuffer extends AbstractByteBufAllocator {
        final MemorySegment memory;
        final ByteBuf buf;

        ReceiveBuffer(int capacity) {
            super(true);
            memory = Arena.ofAuto().allocate(capacity, 4096);
            buf = Unpooled.wrappedBuffer(memory.asByteBuffer()); // held by us: reads retain and release it
        }

        @Override
        protected ByteBuf newHeapBuffer(int initialCapacity, int maxCapacity) {
            return PooledByteBufAllocator.DEFAULT.heapBuffer(initialCapacity, maxCapacity);
        }

        /** The receive buffer if it is free (only this allocator holds it) and large enough, else a pooled one. */
        @Override
        protected ByteBuf newDirectBuffer(int initialCapacity, int maxCapacity) {
            if (buf.refCnt() == 1 && initialCapacity <= buf.capacity()) {
                return buf.retain().clear();
            }
            return PooledByteBufAllocator.DEFAULT.directBuffer(initialCapacity, maxCapacity);
        }

        @Override
        public boolean isDirectBufferPooled() {
            return true;
        }
    }
}
