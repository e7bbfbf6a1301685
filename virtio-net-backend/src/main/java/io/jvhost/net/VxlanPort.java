package io.jvhost.net;

import io.netty.bootstrap.Bootstrap;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.Unpooled;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelOption;
import io.netty.channel.FixedRecvByteBufAllocator;
import io.netty.channel.IoEventLoop;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.epoll.EpollChannelOption;
import io.netty.channel.epoll.EpollDatagramChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.socket.DatagramPacket;
import io.netty.channel.socket.SocketProtocolFamily;
import io.netty.channel.unix.IntegerUnixChannelOption;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.LongSupplier;

import org.jctools.queues.atomic.MpmcAtomicArrayQueue;
import org.jctools.queues.atomic.MpscAtomicArrayQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A VXLAN uplink (RFC 7348) for an {@link L2Switch}: the switch's frames for MACs behind the
 * tunnel go to the remote that last sent from them, frames for unknown, broadcast and multicast
 * MACs to every remote (head-end replication); frames from remotes with the right VNI go into the
 * switch, and their inner source MACs are learnt as behind their sender. Interoperates with Linux
 * {@code ip link add ... type vxlan id N dstport 4789}.
 *
 * <h2>Threads</h2>
 * {@link #send} runs on the guest pollers forwarding through the switch: it encapsulates into a
 * pooled datagram (one copy) and puts it on a JCTools MPSC queue; one Netty epoll event loop of the
 * port's own ({@code jvhost-vxlan}) drains that queue, writing each batch and flushing once per
 * socket (sendmmsg), and reads datagrams (recvmmsg) to decapsulate and forward into the switch,
 * which injects into the guests' lock-free queues.
 *
 * <h2>Sockets</h2>
 * One socket listens on the VXLAN port. Frames leave from {@link #SOURCE_SOCKETS} more, bound to
 * ports the kernel picks from its ephemeral range (32768-60999 by default, the range Linux's vxlan
 * hashes into); the inner flow's hash picks one, so the outer source port follows the inner flow.
 *
 * <h2>Allocation</h2>
 * Sending allocates nothing of ours per frame: pooled datagrams (a {@link DatagramPacket} subclass
 * whose release returns it to its remote's pool) and a preallocated drain task. Netty itself, per
 * datagram on the event loop: {@code sendmmsg} copies each recipient address
 * ({@code InetAddress.getAddress()}, a 4- or 16-byte array), and every received datagram comes as
 * a new {@link DatagramPacket} with a sender {@link InetSocketAddress} and a buffer slice. Measured
 * by {@code VxlanPortTest#shouldMeasureWhatNettyAllocatesPerDatagram} (JDK 25, Netty 4.2.18, 64 B
 * frames): about 64 B per datagram sent and 1.1 KiB per datagram received on the event loop; the
 * pollers' side 0.1 B per frame (Netty's unbounded task queue growing by chunks as drains are
 * scheduled). Netty offers no way around the event loop's share short of bypassing its datagram
 * channel (FFM recvmmsg/sendmmsg through {@code sys}).
 */
public final class VxlanPort implements L2Switch.Uplink, AutoCloseable, io.jvhost.core.metrics.MetricsSource {
    private static final Logger LOG = LoggerFactory.getLogger(VxlanPort.class);
    /** Sockets frames leave from: the flow hash picks one, so its port is the outer source port. */
    static final int SOURCE_SOCKETS = 8;
    /** Pooled datagrams per remote: frames in flight towards it (more are dropped and counted). */
    static final int POOL = 512;
    private static final int DRAIN_LIMIT = 256;
    private static final int RECEIVE_BATCH = 32;
    private static final long LOG_INTERVAL_MILLIS = 10_000;
    /** SOL_SOCKET, SO_NO_CHECK (asm-generic/socket.h); SOL_UDP, UDP_NO_CHECK6_TX (linux/udp.h). */
    private static final IntegerUnixChannelOption SO_NO_CHECK = new IntegerUnixChannelOption("SO_NO_CHECK", 1, 11),
            UDP_NO_CHECK6_TX = new IntegerUnixChannelOption("UDP_NO_CHECK6_TX", 17, 101);

    /** Counter indices; {@link #COUNTER_NAMES} in the same order. */
    public static final int TX_FRAMES = 0, TX_DATAGRAMS = 1, TX_NO_BUFFER = 2, TX_ERRORS = 3, RX_DATAGRAMS = 4,
            RX_FRAMES = 5, RX_BYTES = 6, RX_TRUNCATED = 7, RX_NO_I_FLAG = 8, RX_WRONG_VNI = 9,
            RX_FRAME_TOO_SHORT = 10, RX_FRAME_TOO_LONG = 11, RX_UNKNOWN_SENDER = 12, TX_FRAME_TOO_LONG = 13;
    static final String[] COUNTER_NAMES = {"tx frames", "tx datagrams", "tx dropped no buffer", "tx send errors",
        "rx datagrams", "rx frames", "rx bytes", "rx truncated header", "rx no I flag", "rx wrong VNI",
        "rx inner frame too short", "rx inner frame too long", "rx unknown sender", "tx frame too long"};
    /** Drop counters for each {@link Vxlan#check} result. */
    private static final int[] CHECK_DROPS = {-1, RX_TRUNCATED, RX_NO_I_FLAG, RX_WRONG_VNI, RX_FRAME_TOO_SHORT,
        RX_FRAME_TOO_LONG};

    /**
     * What the port is: its VNI, its remotes, the local address and port it listens on (null:
     * every address of the family), whether the outer UDP checksum is computed, and the largest
     * inner frame (the guests' MTU plus 18).
     */
    public record Config(int vni, List<InetSocketAddress> remotes, InetAddress local, int port, boolean udpChecksum,
                         int maxFrame) {
        public Config {
            remotes = List.copyOf(remotes);
            if (vni < 0 || vni > Vxlan.MAX_VNI) {
                throw new IllegalArgumentException("VNI must be 0.." + Vxlan.MAX_VNI + ": " + vni);
            }
            if (remotes.isEmpty()) {
                throw new IllegalArgumentException("a VXLAN port needs at least one remote");
            }
            if (remotes.size() > 1024) {
                throw new IllegalArgumentException("at most 1024 remotes: " + remotes.size());
            }
            boolean v6 = remotes.get(0).getAddress() instanceof Inet6Address;
            for (InetSocketAddress r : remotes) {
                if (r.isUnresolved() || (r.getAddress() instanceof Inet6Address) != v6) {
                    throw new IllegalArgumentException("remotes must all be IPv4 or all IPv6 addresses: " + remotes);
                }
            }
            if (local != null && (local instanceof Inet6Address) != v6) {
                throw new IllegalArgumentException("local address " + local.getHostAddress()
                        + " is not of the remotes' family (" + (v6 ? "IPv6" : "IPv4") + ")");
            }
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("UDP port must be 0..65535: " + port);
            }
            if (maxFrame < Vxlan.ETHERNET_HEADER || maxFrame > 65535) {
                throw new IllegalArgumentException("largest frame must be 14..65535: " + maxFrame);
            }
        }

        public boolean ipv6() {
            return remotes.get(0).getAddress() instanceof Inet6Address;
        }
    }

    /** A remote VTEP: its address and the datagrams in flight to it. */
    private static final class Remote {
        final InetSocketAddress address;
        final MpmcAtomicArrayQueue<Datagram> free = new MpmcAtomicArrayQueue<>(POOL);

        Remote(InetSocketAddress address) {
            this.address = address;
        }
    }

    /**
     * A pooled datagram to one remote. Netty releases a message once written (or failed); for this
     * one that puts it back in its remote's pool. Its buffer stays put.
     */
    private static final class Datagram extends DatagramPacket {
        final MemorySegment memory;
        final Remote remote;
        int socket;

        Datagram(Remote remote, MemorySegment memory) {
            super(Unpooled.wrappedBuffer(memory.asByteBuffer()), remote.address);
            this.memory = memory;
            this.remote = remote;
        }

        @Override
        public boolean release() {
            remote.free.offer(this);
            return false;
        }

        @Override
        public boolean release(int decrement) {
            return release();
        }

        @Override
        public int refCnt() {
            return 1;
        }

        @Override
        public Datagram retain() {
            return this;
        }

        @Override
        public Datagram retain(int increment) {
            return this;
        }

        @Override
        public Datagram touch() {
            return this;
        }

        @Override
        public Datagram touch(Object hint) {
            return this;
        }
    }

    private final Config config;
    private final Remote[] remotes;
    private final MacTable fdb;
    private final LongSupplier clock;
    private final AtomicLongArray counters = new AtomicLongArray(COUNTER_NAMES.length);
    private final AtomicLongArray lastLogged = new AtomicLongArray(COUNTER_NAMES.length);
    private final MpscAtomicArrayQueue<Datagram> outbound;
    private final AtomicBoolean drainScheduled = new AtomicBoolean();
    private final Runnable drain = this::drain;
    /** The event loop's copy of a received datagram, so the switch reads native memory. */
    private final MemorySegment rxScratch;
    private final ByteBuffer rxScratchBuffer;
    private final MultiThreadIoEventLoopGroup group;
    private final IoEventLoop loop;
    private final Channel listener;
    private final Channel[] senders = new Channel[SOURCE_SOCKETS];
    private final boolean[] written = new boolean[SOURCE_SOCKETS];
    private volatile L2Switch.SwitchPort switchPort;

    private VxlanPort(Config config, LongSupplier clock) {
        this.config = config;
        this.clock = clock;
        this.fdb = new MacTable(4096, 300_000, clock);
        this.remotes = new Remote[config.remotes().size()];
        long slot = Math.max(64, (Vxlan.HEADER_LENGTH + config.maxFrame() + 63) & ~63L);
        for (int i = 0; i < remotes.length; i++) {
            remotes[i] = new Remote(config.remotes().get(i));
            MemorySegment slab = Arena.ofAuto().allocate(slot * POOL, 64);
            for (int j = 0; j < POOL; j++) {
                remotes[i].free.offer(new Datagram(remotes[i], slab.asSlice(j * slot, slot)));
            }
        }
        this.outbound = new MpscAtomicArrayQueue<>(Math.max(1024, POOL * Math.min(remotes.length, 8)));
        this.rxScratch = Arena.ofAuto().allocate(Vxlan.HEADER_LENGTH + config.maxFrame() + 1, 64);
        this.rxScratchBuffer = rxScratch.asByteBuffer();
        ThreadFactory threads = r -> Thread.ofPlatform().name("jvhost-vxlan").daemon(true).unstarted(r);
        this.group = new MultiThreadIoEventLoopGroup(1, threads, EpollIoHandler.newFactory());
        this.loop = group.next();
        try {
            SocketProtocolFamily family = config.ipv6() ? SocketProtocolFamily.INET6 : SocketProtocolFamily.INET;
            InetAddress bindAddress = config.local() != null ? config.local()
                    : InetAddress.getByName(config.ipv6() ? "::" : "0.0.0.0");
            Receiver receiver = new Receiver();
            // recvmmsg: Netty reads up to RECEIVE_BATCH datagrams per call when the payload size is set
            // and the receive buffer holds that many. One byte more than the largest valid datagram, so
            // a longer one (truncated to this size) is still seen as too long.
            int payload = Vxlan.HEADER_LENGTH + config.maxFrame() + 1;
            Bootstrap b = new Bootstrap().group(loop).channelFactory(() -> new EpollDatagramChannel(family))
                    .option(EpollChannelOption.MAX_DATAGRAM_PAYLOAD_SIZE, payload)
                    .option(ChannelOption.RCVBUF_ALLOCATOR, new FixedRecvByteBufAllocator(payload * RECEIVE_BATCH))
                    .option(ChannelOption.SO_RCVBUF, 4 << 20)
                    .option(ChannelOption.SO_SNDBUF, 4 << 20)
                    .handler(receiver);
            if (!config.udpChecksum()) {
                b.option(config.ipv6() ? UDP_NO_CHECK6_TX : SO_NO_CHECK, 1);
            }
            this.listener = b.bind(new InetSocketAddress(bindAddress, config.port())).sync().channel();
            for (int i = 0; i < SOURCE_SOCKETS; i++) {
                senders[i] = b.bind(new InetSocketAddress(bindAddress, 0)).sync().channel();
            }
        } catch (Exception e) {
            group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
            throw new IllegalStateException("VXLAN: cannot bind UDP " + (config.local() != null
                    ? config.local().getHostAddress() : "*") + ":" + config.port() + ": " + e.getMessage(), e);
        }
        LOG.info("VXLAN VNI {} listening on {} towards {}", config.vni(), listener.localAddress(), config.remotes());
    }

    /**
     * Opens the port's sockets and plugs it into {@code sw}. Throws {@link IllegalStateException}
     * when the UDP port cannot be bound (in use, or the local address is not this host's).
     */
    public static VxlanPort open(L2Switch sw, Config config) {
        return open(sw, config, System::currentTimeMillis);
    }

    /** As {@link #open(L2Switch, Config)}, with the forwarding table's clock (ms) injected. */
    static VxlanPort open(L2Switch sw, Config config, LongSupplier clock) {
        VxlanPort p = new VxlanPort(config, clock);
        p.switchPort = sw.newUplinkPort(p);
        return p;
    }

    public Config config() {
        return config;
    }

    /** The UDP port it listens on (the configured one, or the one the kernel chose for 0). */
    public int localPort() {
        return ((InetSocketAddress) listener.localAddress()).getPort();
    }

    /** The outer source ports frames leave from. */
    int[] sourcePorts() {
        int[] ports = new int[SOURCE_SOCKETS];
        for (int i = 0; i < SOURCE_SOCKETS; i++) {
            ports[i] = ((InetSocketAddress) senders[i].localAddress()).getPort();
        }
        return ports;
    }

    /** The remote (index into {@link Config#remotes}) behind {@code mac}, or -1. Any thread. */
    public int remoteOf(long mac) {
        return fdb.lookup(mac);
    }

    /** Counter {@code index} ({@link #TX_FRAMES}..., named in {@link #COUNTER_NAMES}). Any thread. */
    public long counter(int index) {
        return counters.get(index);
    }

    /** The port's switch port. */
    public L2Switch.SwitchPort switchPort() {
        return switchPort;
    }

    // ---- to the remotes: guest pollers, then the event loop -----------------------------------

    /**
     * Encapsulates a frame from the switch for the remote behind its destination MAC, or for every
     * remote when that is unknown or a group address. Any poller thread; allocation-free.
     */
    @Override
    public void send(long source, MemorySegment memory, long offset, long length) {
        if (length > config.maxFrame()) {
            if (drop(TX_FRAME_TOO_LONG)) {
                LOG.warn("VXLAN VNI {}: dropped a {} B frame, longer than the tunnel's {} B ({} so far)", config.vni(),
                        length, config.maxFrame(), counters.get(TX_FRAME_TOO_LONG));
            }
            return;
        }
        counters.getAndIncrement(TX_FRAMES);
        long dst = Frames.destination(memory, offset);
        int remote = Frames.isGroup(dst) ? -1 : fdb.lookup(dst);
        int socket = (Vxlan.flowHash(memory, offset, length) & 0x7FFF_FFFF) % SOURCE_SOCKETS;
        if (remote >= 0) {
            enqueue(remotes[remote], socket, memory, offset, length);
        } else {
            for (Remote r : remotes) {
                enqueue(r, socket, memory, offset, length);
            }
        }
        if (!drainScheduled.get() && drainScheduled.compareAndSet(false, true)) {
            loop.execute(drain); // one preallocated task per batch; Netty's task queue does not allocate per offer
        }
    }

    private void enqueue(Remote r, int socket, MemorySegment memory, long offset, long length) {
        Datagram d = r.free.poll();
        if (d == null) {
            noBuffer(r);
            return;
        }
        Vxlan.putHeader(d.memory, 0, config.vni());
        MemorySegment.copy(memory, offset, d.memory, Vxlan.HEADER_LENGTH, length);
        d.content().setIndex(0, Vxlan.HEADER_LENGTH + (int) length);
        d.socket = socket;
        if (!outbound.offer(d)) {
            r.free.offer(d);
            noBuffer(r);
        }
    }

    private void noBuffer(Remote r) {
        if (drop(TX_NO_BUFFER)) {
            LOG.warn("VXLAN VNI {}: dropped a frame towards {}: no datagram buffer free, the underlay is slower than"
                    + " the guests ({} so far)", config.vni(), r.address, counters.get(TX_NO_BUFFER));
        }
    }

    /** Event loop: writes what the pollers queued, then one flush per socket written (sendmmsg). */
    private void drain() {
        drainScheduled.set(false);
        int n = 0;
        for (Datagram d; n < DRAIN_LIMIT && (d = outbound.poll()) != null; n++) {
            Channel c = senders[d.socket];
            c.write(d, c.voidPromise()); // a failure reaches Receiver.exceptionCaught; either way d is released
            written[d.socket] = true;
        }
        for (int i = 0; i < SOURCE_SOCKETS; i++) {
            if (written[i]) {
                written[i] = false;
                senders[i].flush();
            }
        }
        counters.getAndAdd(TX_DATAGRAMS, n);
        if (!outbound.isEmpty() && drainScheduled.compareAndSet(false, true)) {
            loop.execute(drain); // more than one batch: let reads run in between
        }
    }

    // ---- from the remotes: the event loop -----------------------------------------------------

    @ChannelHandler.Sharable
    private final class Receiver extends ChannelInboundHandlerAdapter {
        @Override
        public void channelRead(ChannelHandlerContext ctx, Object msg) {
            DatagramPacket p = (DatagramPacket) msg;
            try {
                ByteBuf content = p.content();
                int length = Math.min(content.readableBytes(), (int) rxScratch.byteSize());
                rxScratchBuffer.clear().limit(length);
                content.getBytes(content.readerIndex(), rxScratchBuffer);
                receive(p.sender().getAddress(), rxScratch, 0, length);
            } finally {
                p.release();
            }
        }

        @Override
        public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
            if (drop(TX_ERRORS)) { // e.g. no route to a remote, or a remote's ICMP error
                LOG.warn("VXLAN VNI {}: sending failed ({} so far): {}", config.vni(), counters.get(TX_ERRORS), cause.toString());
            }
        }
    }

    /**
     * Decapsulates one UDP payload from {@code sender}: checks it, learns the inner source MAC as
     * behind the sender and forwards the inner frame into the switch. Returns the {@link Vxlan#check}
     * result, or -1 for an unknown sender. The event loop (tests: any one thread).
     */
    int receive(InetAddress sender, MemorySegment packet, long offset, long length) {
        counters.getAndIncrement(RX_DATAGRAMS);
        int remote = remoteIndex(sender);
        if (remote < 0) {
            if (drop(RX_UNKNOWN_SENDER)) {
                LOG.warn("VXLAN VNI {}: dropped a datagram from {}, which is no remote of this port ({} so far)",
                        config.vni(), sender.getHostAddress(), counters.get(RX_UNKNOWN_SENDER));
            }
            return -1;
        }
        int r = Vxlan.check(packet, offset, length, config.vni(), config.maxFrame());
        if (r != Vxlan.OK) {
            if (drop(CHECK_DROPS[r])) {
                LOG.warn("VXLAN VNI {}: dropped {} B from {} ({}: {} so far; VNI in it {})", config.vni(), length,
                        sender.getHostAddress(), COUNTER_NAMES[CHECK_DROPS[r]], counters.get(CHECK_DROPS[r]),
                        length >= Vxlan.HEADER_LENGTH ? Vxlan.vni(packet, offset) : "none");
            }
            return r;
        }
        long frame = offset + Vxlan.HEADER_LENGTH, frameLength = length - Vxlan.HEADER_LENGTH;
        int before = fdb.learn(Frames.source(packet, frame), remote);
        if (before >= 0 && before != remote) {
            LOG.info("MAC {} moved from remote {} to {}", Frames.macString(Frames.source(packet, frame)),
                    remotes[before].address, remotes[remote].address);
        }
        counters.getAndIncrement(RX_FRAMES);
        counters.getAndAdd(RX_BYTES, frameLength);
        L2Switch.SwitchPort sp = switchPort;
        if (sp != null) {
            sp.forwardFromUplink(packet, frame, frameLength);
        }
        return Vxlan.OK;
    }

    private int remoteIndex(InetAddress sender) {
        for (int i = 0; i < remotes.length; i++) {
            if (remotes[i].address.getAddress().equals(sender)) {
                return i;
            }
        }
        return -1;
    }

    /**
     * Counts a drop or error; true when it is to be logged: the first, then at most once per 10 s
     * per kind. Any thread; allocation-free.
     */
    private boolean drop(int counter) {
        long n = counters.incrementAndGet(counter);
        long now = clock.getAsLong(), last = lastLogged.get(counter);
        return (n == 1 || now - last >= LOG_INTERVAL_MILLIS) && lastLogged.compareAndSet(counter, last, now);
    }

    /** What each drop counter is called in the {@code reason} label of {@code jvhost_vxlan_drops_total}; null: not a drop. */
    private static final String[] DROP_REASONS = {null, null, "tx_no_buffer", "tx_send_error", null, null, null,
        "rx_truncated_header", "rx_no_i_flag", "rx_wrong_vni", "rx_inner_frame_too_short", "rx_inner_frame_too_long",
        "rx_unknown_sender", "tx_frame_too_long"};

    /**
     * The uplink's counters for a scrape, as device {@code vxlan<VNI>} of type {@code vxlan}:
     * frames and datagrams each way, bytes received, and drops by reason. Any thread; plain reads.
     */
    @Override
    public io.jvhost.core.metrics.DeviceSnapshot metrics() {
        java.util.List<io.jvhost.core.metrics.Sample> samples = new java.util.ArrayList<>();
        samples.add(counter("jvhost_vxlan_tx_frames", "Frames the switch sent out over VXLAN.", TX_FRAMES));
        samples.add(counter("jvhost_vxlan_tx_datagrams", "UDP datagrams sent to remotes (a frame flooded to N remotes is N).", TX_DATAGRAMS));
        samples.add(counter("jvhost_vxlan_rx_datagrams", "UDP datagrams received on the VXLAN port.", RX_DATAGRAMS));
        samples.add(counter("jvhost_vxlan_rx_frames", "Frames received over VXLAN and given to the switch.", RX_FRAMES));
        samples.add(counter("jvhost_vxlan_rx_bytes", "Bytes of the frames received over VXLAN.", RX_BYTES));
        for (int i = 0; i < DROP_REASONS.length; i++) {
            if (DROP_REASONS[i] != null) {
                samples.add(new io.jvhost.core.metrics.Sample("jvhost_vxlan_drops", io.jvhost.core.metrics.Sample.Type.COUNTER,
                        "Frames or datagrams the VXLAN uplink dropped, by reason.", "reason", DROP_REASONS[i], counters.get(i)));
            }
        }
        return new io.jvhost.core.metrics.DeviceSnapshot("vxlan" + config.vni(), "vxlan", samples, java.util.List.of());
    }

    private io.jvhost.core.metrics.Sample counter(String name, String help, int index) {
        return new io.jvhost.core.metrics.Sample(name, io.jvhost.core.metrics.Sample.Type.COUNTER, help, null, null, counters.get(index));
    }

    @Override
    public String describe() {
        StringBuilder s = new StringBuilder("vxlan VNI ").append(config.vni()).append(" port ").append(localPort())
                .append(" remotes ").append(remotes.length);
        for (int i = 0; i < COUNTER_NAMES.length; i++) {
            long v = counters.get(i);
            if (v != 0 || i == TX_FRAMES || i == RX_FRAMES) {
                s.append(", ").append(COUNTER_NAMES[i]).append(' ').append(v);
            }
        }
        return s.toString();
    }

    /** Closes the sockets and stops the event loop; frames still queued are dropped. */
    @Override
    public void close() {
        // Sockets first, each waited for: the UDP port is free again when this returns.
        listener.close().syncUninterruptibly();
        for (Channel sender : senders) {
            sender.close().syncUninterruptibly();
        }
        group.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
    }
}
