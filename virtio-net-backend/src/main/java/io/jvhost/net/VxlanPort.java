package io.jvhost.net;

import io.jvhost.core.sys.Errno;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UdpSocket;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.LongSupplier;

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
 * {@link #send} runs on the guest pollers forwarding through the switch, and sends there: one
 * {@code sendmmsg} per frame writes the VXLAN header and the frame, straight from where the switch
 * has it (guest memory), to its remote, or to every remote at once when it floods. No copy, no
 * queue, no other thread. One thread of the port's own ({@code jvhost-vxlan}) waits in
 * {@code recvmmsg} on the VXLAN port, takes up to {@link #RECEIVE_BATCH} datagrams per call into
 * native buffers, and decapsulates each into the switch from there, which injects it into the
 * guests' lock-free queues.
 *
 * <h2>Sockets</h2>
 * One socket listens on the VXLAN port. Frames leave from {@link #SOURCE_SOCKETS} more, bound to
 * ports the kernel picks from its ephemeral range (32768-60999 by default, the range Linux's vxlan
 * hashes into); the inner flow's hash picks one, so the outer source port follows the inner flow.
 * The sockets are FFM system calls through {@code sys}' {@link UdpSocket}.
 *
 * <h2>Allocation</h2>
 * None per frame either way, in steady state: each sending thread has its preallocated
 * {@code mmsghdr} and {@code iovec} pair ({@link UdpSocket.Sender}, one per thread the first time
 * it sends), the receiving thread its batch of buffers and sender addresses
 * ({@link UdpSocket.Receiver}); remotes' addresses are native once. Only logging a drop
 * allocates (at most once per 10 s per kind). {@code VxlanPortTest} measures both directions.
 */
public final class VxlanPort implements L2Switch.Uplink, AutoCloseable, io.jvhost.core.metrics.MetricsSource {
    private static final Logger LOG = LoggerFactory.getLogger(VxlanPort.class);
    /** Sockets frames leave from: the flow hash picks one, so its port is the outer source port. */
    static final int SOURCE_SOCKETS = 8;
    /** Datagrams one recvmmsg takes at most. */
    static final int RECEIVE_BATCH = 32;
    /** Remotes one sendmmsg reaches at most; a flood to more takes several calls. */
    private static final int SEND_BATCH = 64;
    private static final int SOCKET_BUFFER = 4 << 20;
    private static final long LOG_INTERVAL_MILLIS = 10_000;

    /** Counter indices; {@link #COUNTER_NAMES} in the same order. */
    public static final int TX_FRAMES = 0, TX_DATAGRAMS = 1, TX_NO_BUFFER = 2, TX_ERRORS = 3, RX_DATAGRAMS = 4,
            RX_FRAMES = 5, RX_BYTES = 6, RX_TRUNCATED = 7, RX_NO_I_FLAG = 8, RX_WRONG_VNI = 9,
            RX_FRAME_TOO_SHORT = 10, RX_FRAME_TOO_LONG = 11, RX_UNKNOWN_SENDER = 12, TX_FRAME_TOO_LONG = 13,
            RX_ERRORS = 14;
    static final String[] COUNTER_NAMES = {"tx frames", "tx datagrams", "tx dropped no buffer", "tx send errors",
        "rx datagrams", "rx frames", "rx bytes", "rx truncated header", "rx no I flag", "rx wrong VNI",
        "rx inner frame too short", "rx inner frame too long", "rx unknown sender", "tx frame too long",
        "rx receive errors"};
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

    private final Config config;
    private final UdpSocket.Address[] remotes;
    private final MacTable fdb;
    private final LongSupplier clock;
    private final AtomicLongArray counters = new AtomicLongArray(COUNTER_NAMES.length);
    private final AtomicLongArray lastLogged = new AtomicLongArray(COUNTER_NAMES.length);
    /** The 8 bytes in front of every frame sent: the I flag and the VNI. Read-only once written. */
    private final MemorySegment header;
    private final UdpSocket listener;
    private final UdpSocket[] sources = new UdpSocket[SOURCE_SOCKETS];
    /** Each sending thread's sendmmsg vectors, made the first time it sends. */
    private final ThreadLocal<UdpSocket.Sender> senders;
    private final UdpSocket.Receiver receiver;
    private final Thread receiveThread;
    private volatile boolean closed;
    private volatile L2Switch.SwitchPort switchPort;

    private VxlanPort(Config config, LongSupplier clock, io.jvhost.core.sys.Fd inherited) {
        this.config = config;
        this.clock = clock;
        this.fdb = new MacTable(4096, 300_000, clock);
        this.remotes = new UdpSocket.Address[config.remotes().size()];
        for (int i = 0; i < remotes.length; i++) {
            remotes[i] = UdpSocket.Address.of(config.remotes().get(i));
        }
        this.header = Arena.ofAuto().allocate(Vxlan.HEADER_LENGTH, 8);
        Vxlan.putHeader(header, 0, config.vni());
        int perCall = Math.min(remotes.length, SEND_BATCH);
        this.senders = ThreadLocal.withInitial(() -> new UdpSocket.Sender(perCall));
        // One byte more than the largest valid datagram, so a longer one (cut to this size) still
        // shows as too long.
        this.receiver = new UdpSocket.Receiver(RECEIVE_BATCH, Vxlan.HEADER_LENGTH + config.maxFrame() + 1);
        InetAddress bindAddress = config.local() != null ? config.local()
                : InetAddress.ofLiteral(config.ipv6() ? "::" : "0.0.0.0");
        try { // a predecessor's socket (live upgrade) keeps the port bound throughout
            this.listener = inherited != null ? UdpSocket.adopt(inherited, config.ipv6())
                    : UdpSocket.open(new InetSocketAddress(bindAddress, config.port()));
        } catch (NativeException e) {
            throw new IllegalStateException("VXLAN: cannot bind UDP " + (config.local() != null
                    ? config.local().getHostAddress() : "*") + ":" + config.port() + ": " + e.getMessage(), e);
        }
        try {
            listener.setOption(UdpSocket.SOL_SOCKET, UdpSocket.SO_RCVBUF, SOCKET_BUFFER);
            for (int i = 0; i < SOURCE_SOCKETS; i++) {
                sources[i] = UdpSocket.open(new InetSocketAddress(bindAddress, 0));
                sources[i].setOption(UdpSocket.SOL_SOCKET, UdpSocket.SO_SNDBUF, SOCKET_BUFFER);
                sources[i].setOption(UdpSocket.SOL_SOCKET, UdpSocket.SO_RCVBUF, 0); // nothing is read there: the minimum
                if (!config.udpChecksum()) {
                    if (config.ipv6()) {
                        sources[i].setOption(UdpSocket.SOL_UDP, UdpSocket.UDP_NO_CHECK6_TX, 1);
                    } else {
                        sources[i].setOption(UdpSocket.SOL_SOCKET, UdpSocket.SO_NO_CHECK, 1);
                    }
                }
            }
        } catch (NativeException e) {
            closeSockets();
            throw new IllegalStateException("VXLAN: cannot set up UDP sockets on " + (config.local() != null
                    ? config.local().getHostAddress() : "*") + ": " + e.getMessage(), e);
        }
        this.receiveThread = Thread.ofPlatform().name("jvhost-vxlan").daemon(true).unstarted(this::receiveLoop);
        receiveThread.start();
        LOG.info("VXLAN VNI {} listening on {} towards {}", config.vni(), config.local() == null ? "*:" + listener.localPort()
                : UdpSocket.Address.of(new InetSocketAddress(config.local(), listener.localPort())), List.of(remotes));
    }

    /**
     * Opens the port's sockets and plugs it into {@code sw}. Throws {@link IllegalStateException}
     * when the UDP port cannot be bound (in use, or the local address is not this host's).
     */
    public static VxlanPort open(L2Switch sw, Config config) {
        return open(sw, config, System::currentTimeMillis, null);
    }

    /**
     * As {@link #open(L2Switch, Config)} on the listening socket {@code inherited} a predecessor
     * process handed over (live upgrade: the port stays bound); its own source sockets are new.
     */
    public static VxlanPort open(L2Switch sw, Config config, io.jvhost.core.sys.Fd inherited) {
        return open(sw, config, System::currentTimeMillis, inherited);
    }

    /** As {@link #open(L2Switch, Config)}, with the forwarding table's clock (ms) injected. */
    static VxlanPort open(L2Switch sw, Config config, LongSupplier clock) {
        return open(sw, config, clock, null);
    }

    private static VxlanPort open(L2Switch sw, Config config, LongSupplier clock, io.jvhost.core.sys.Fd inherited) {
        VxlanPort p = new VxlanPort(config, clock, inherited);
        p.switchPort = sw.newUplinkPort(p);
        return p;
    }

    public Config config() {
        return config;
    }

    /** A duplicate of the listening socket, for a successor process (live upgrade); the caller closes it. */
    public io.jvhost.core.sys.Fd duplicateListenerFd() throws NativeException {
        return listener.duplicateFd();
    }

    /** The UDP port it listens on (the configured one, or the one the kernel chose for 0). */
    public int localPort() {
        return listener.localPort();
    }

    /** The outer source ports frames leave from. */
    int[] sourcePorts() {
        int[] ports = new int[SOURCE_SOCKETS];
        for (int i = 0; i < SOURCE_SOCKETS; i++) {
            ports[i] = sources[i].localPort();
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

    // ---- to the remotes: the guest pollers ----------------------------------------------------

    /**
     * Encapsulates a frame from the switch and sends it to the remote behind its destination MAC,
     * or to every remote when that is unknown or a group address, on the calling thread (a
     * poller; several at once is fine). Never waits: a full socket buffer drops the frame, counted.
     * {@code memory} is native (the switch's frames are). Allocation-free.
     */
    @Override
    public void send(long source, MemorySegment memory, long offset, long length) {
        if (closed) {
            return;
        }
        if (length > config.maxFrame()) {
            if (drop(TX_FRAME_TOO_LONG)) {
                LOG.warn("VXLAN VNI {}: dropped a {} B frame, longer than the tunnel's {} B ({} so far)", config.vni(),
                        length, config.maxFrame(), counters.get(TX_FRAME_TOO_LONG));
            }
            return;
        }
        if (!memory.isNative()) { // a caller breaking the Uplink contract: the socket takes native memory only
            if (drop(TX_ERRORS)) {
                LOG.warn("VXLAN VNI {}: dropped a frame not in native memory ({} so far)", config.vni(), counters.get(TX_ERRORS));
            }
            return;
        }
        counters.getAndIncrement(TX_FRAMES);
        long dst = Frames.destination(memory, offset);
        int remote = Frames.isGroup(dst) ? -1 : fdb.lookup(dst);
        UdpSocket from = sources[(Vxlan.flowHash(memory, offset, length) & 0x7FFF_FFFF) % SOURCE_SOCKETS];
        UdpSocket.Sender sender = senders.get();
        int first = remote >= 0 ? remote : 0, end = remote >= 0 ? remote + 1 : remotes.length;
        int sent = 0;
        while (first < end) {
            int r = sender.send(from, remotes, first, end - first, header, 0, Vxlan.HEADER_LENGTH, memory, offset, length);
            if (r > 0) {
                sent += r;
                first += r;
            } else {
                sendFailed(r, first);
                first++; // that remote misses this frame; the others still get it
            }
        }
        if (sent > 0) {
            counters.getAndAdd(TX_DATAGRAMS, sent);
        }
    }

    private void sendFailed(int result, int remote) {
        if (result == -LibC.EAGAIN || result == -LibC.ENOBUFS) {
            if (drop(TX_NO_BUFFER)) {
                LOG.warn("VXLAN VNI {}: dropped a frame towards {}: the socket's send buffer is full, the underlay is"
                        + " slower than the guests ({} so far)", config.vni(), remotes[remote], counters.get(TX_NO_BUFFER));
            }
        } else if (drop(TX_ERRORS)) { // e.g. no route to the remote, or longer than the underlay's MTU (EMSGSIZE)
            LOG.warn("VXLAN VNI {}: sending to {} failed: {} ({} so far)", config.vni(), remotes[remote],
                    Errno.name(-result) + " (" + -result + ")", counters.get(TX_ERRORS));
        }
    }

    // ---- from the remotes: the port's thread ----------------------------------------------------

    /** The port's thread: waits for datagrams and decapsulates each batch into the switch, until closed. */
    private void receiveLoop() {
        UdpSocket.Receiver rx = receiver;
        MemorySegment buffers = rx.buffers();
        while (!closed) {
            int n = rx.receive(listener);
            if (closed) {
                break; // woken by close(): what it got is not for us any more
            }
            if (n < 0) {
                if (n != -LibC.EINTR && n != -LibC.EAGAIN && drop(RX_ERRORS)) {
                    LOG.warn("VXLAN VNI {}: receiving failed: {} ({} so far)", config.vni(),
                            Errno.name(-n) + " (" + -n + ")", counters.get(RX_ERRORS));
                }
                continue;
            }
            for (int i = 0; i < n; i++) {
                try {
                    counters.getAndIncrement(RX_DATAGRAMS);
                    int remote = rx.senderAmong(i, remotes);
                    if (remote < 0) {
                        if (drop(RX_UNKNOWN_SENDER)) {
                            InetAddress sender = rx.sender(i);
                            LOG.warn("VXLAN VNI {}: dropped a datagram from {}, which is no remote of this port ({} so far)",
                                    config.vni(), sender != null ? sender.getHostAddress() : "?", counters.get(RX_UNKNOWN_SENDER));
                        }
                        continue;
                    }
                    receive(remote, buffers, rx.offset(i), rx.length(i));
                } catch (RuntimeException e) { // a bug of ours on one datagram: count it, keep serving
                    if (drop(RX_ERRORS)) {
                        LOG.warn("VXLAN VNI {}: a received datagram failed ({} so far)", config.vni(), counters.get(RX_ERRORS), e);
                    }
                }
            }
        }
    }

    /**
     * Decapsulates one UDP payload from remote {@code remote}: checks it, learns the inner source
     * MAC as behind that remote and forwards the inner frame into the switch. Returns the
     * {@link Vxlan#check} result. The port's thread (tests: any one thread).
     */
    int receive(int remote, MemorySegment packet, long offset, long length) {
        int r = Vxlan.check(packet, offset, length, config.vni(), config.maxFrame());
        if (r != Vxlan.OK) {
            if (drop(CHECK_DROPS[r])) {
                LOG.warn("VXLAN VNI {}: dropped {} B from {} ({}: {} so far; VNI in it {})", config.vni(), length,
                        remotes[remote].socketAddress().getAddress().getHostAddress(), COUNTER_NAMES[CHECK_DROPS[r]],
                        counters.get(CHECK_DROPS[r]), length >= Vxlan.HEADER_LENGTH ? Vxlan.vni(packet, offset) : "none");
            }
            return r;
        }
        long frame = offset + Vxlan.HEADER_LENGTH, frameLength = length - Vxlan.HEADER_LENGTH;
        int before = fdb.learn(Frames.source(packet, frame), remote);
        if (before >= 0 && before != remote) {
            LOG.info("MAC {} moved from remote {} to {}", Frames.macString(Frames.source(packet, frame)),
                    remotes[before], remotes[remote]);
        }
        counters.getAndIncrement(RX_FRAMES);
        counters.getAndAdd(RX_BYTES, frameLength);
        L2Switch.SwitchPort sp = switchPort;
        if (sp != null) {
            sp.forwardFromUplink(packet, frame, frameLength);
        }
        return Vxlan.OK;
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
        "rx_unknown_sender", "tx_frame_too_long", "rx_receive_error"};

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

    /**
     * Stops the port's thread and closes the sockets: the UDP port is free again when this
     * returns. Call it once nothing forwards to the port any more (its NICs' queues stopped); a
     * frame sent meanwhile is dropped.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        listener.shutdownInput(); // wakes the thread from recvmmsg
        try {
            receiveThread.join(2_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (receiveThread.isAlive()) {
            LOG.warn("VXLAN VNI {}: the receiving thread did not stop; closing its socket under it", config.vni());
        }
        closeSockets();
    }

    private void closeSockets() {
        listener.close();
        for (UdpSocket s : sources) {
            if (s != null) {
                s.close();
            }
        }
    }
}
