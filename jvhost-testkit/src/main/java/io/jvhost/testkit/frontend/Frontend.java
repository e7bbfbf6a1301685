package io.jvhost.testkit.frontend;

import io.jvhost.core.protocol.ConfigRequest;
import io.jvhost.core.protocol.Header;
import io.jvhost.core.protocol.InflightRequest;
import io.jvhost.core.protocol.MemoryTable;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.protocol.Payload;
import io.jvhost.core.protocol.RegionDescription;
import io.jvhost.core.protocol.VringAddress;
import io.jvhost.core.protocol.VringFd;
import io.jvhost.core.protocol.VringState;
import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.runtime.FeaturePolicy;
import io.jvhost.core.sys.Epoll;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.MessageIo;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;
import io.jvhost.core.device.VirtioFeatures;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.SocketTimeoutException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;

import static io.jvhost.core.protocol.MessageType.*;

/**
 * A vhost-user frontend in Java, for tests and load generation: it speaks the protocol over a real
 * Unix socket with real SCM_RIGHTS, shares {@link GuestRam}, and replays the message sequences
 * QEMU 7.2 sends (see {@link #startLikeQemu}). It can also send anything at all, malformed or not.
 *
 * <p>One thread at a time.
 */
public final class Frontend implements AutoCloseable {
    private final Fd socket;
    private final MessageIo io = new MessageIo(Header.SIZE + Header.MAX_PAYLOAD);
    /** Whether REPLY_ACK is on, from the last SET_PROTOCOL_FEATURES sent, and before it. */
    private boolean replyAck, replyAckBefore;
    private Duration replyTimeout;
    private Epoll readable;
    private boolean closed;
    /** The ring features (RING_PACKED, IN_ORDER) the simulated driver takes; none: split rings, any order. */
    private long ringFeatures;

    /** RING_PACKED and IN_ORDER: what a driver takes only if it implements them. */
    public static final long RING_FEATURES = VirtioFeatures.bit(VirtioFeatures.RING_PACKED)
            | VirtioFeatures.bit(VirtioFeatures.IN_ORDER);

    /** A reply from the backend. */
    public record Reply(int request, int flags, byte[] payload, Fd[] fds) {
        public long u64() {
            return Payload.u64(payload, 0);
        }

        public int u32(int offset) {
            return Payload.u32(payload, offset);
        }
    }

    private Frontend(Fd socket) {
        this.socket = socket;
    }

    /** Connects to a backend listening at {@code path}, retrying for up to {@code timeoutMillis}. */
    public static Frontend connect(Path path, long timeoutMillis) throws IOException {
        long deadline = System.currentTimeMillis() + timeoutMillis;
        while (true) {
            try {
                return new Frontend(UnixSockets.connect(path, false));
            } catch (NativeException e) {
                if (System.currentTimeMillis() > deadline) {
                    throw e;
                }
                try {
                    Thread.sleep(20);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    throw new IOException(ie);
                }
            }
        }
    }

    /** Wraps an already connected socket (e.g. one accepted from a backend in client mode). */
    public static Frontend over(Fd socket) {
        return new Frontend(socket);
    }

    /**
     * Bounds every later wait for a reply: a reply that has not arrived within {@code timeout}
     * throws {@link SocketTimeoutException}. {@code null} (the default) waits as long as it takes.
     */
    public Frontend replyTimeout(Duration timeout) {
        this.replyTimeout = timeout;
        return this;
    }

    /**
     * The rings this frontend's driver uses: {@code layout}, and whether it accepts IN_ORDER. From
     * then on {@link #handshakeLikeQemu} reports RING_PACKED and IN_ORDER as offered only when the
     * driver takes them, so that a test acking what the handshake returned gets the rings it
     * builds. By default split rings, any order, as a Linux 6.1 guest on a split ring.
     */
    public Frontend driverRings(DriverQueue.Layout layout, boolean inOrder) {
        this.ringFeatures = (layout == DriverQueue.Layout.PACKED ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0)
                | (inOrder ? VirtioFeatures.bit(VirtioFeatures.IN_ORDER) : 0);
        return this;
    }

    /** {@code features} as this frontend's driver takes them: RING_PACKED and IN_ORDER only as {@link #driverRings} says. */
    public long driverTakes(long features) {
        return (features & ~RING_FEATURES) | (features & ringFeatures);
    }

    /** Sends raw bytes (header included) with {@code fds}; for malformed-message tests. */
    public void sendRaw(byte[] bytes, Fd... fds) throws IOException {
        MemorySegment.copy(MemorySegment.ofArray(bytes), 0, io.txBuffer(), 0, bytes.length);
        int[] raw = new int[fds.length];
        for (int i = 0; i < fds.length; i++) {
            raw[i] = fds[i].get();
        }
        long n = io.send(socket.get(), bytes.length, raw);
        if (n != bytes.length) {
            throw new NativeException("sendmsg", n < 0 ? (int) -n : LibC.EPIPE);
        }
    }

    /**
     * Sends one request with the given flags (version bit included by the caller). A
     * SET_PROTOCOL_FEATURES is taken as accepted: whether REPLY_ACK is on follows its payload.
     */
    public void send(int request, int flags, byte[] payload, Fd... fds) throws IOException {
        sendRaw(Header.encode(request, flags, payload), fds);
        if (request == SET_PROTOCOL_FEATURES && payload.length == 8) {
            replyAckBefore = replyAck;
            replyAck = hasReplyAck(payload);
        }
    }

    private static boolean hasReplyAck(byte[] protocolFeatures) {
        return (Payload.u64(protocolFeatures, 0) & ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK)) != 0;
    }

    /** Whether the backend acks {@code request} with NEED_REPLY set, if it accepts it. */
    private boolean ackedIfAccepted(int request, byte[] payload) {
        return request == SET_PROTOCOL_FEATURES && payload.length == 8 ? hasReplyAck(payload) : replyAck;
    }

    /** Whether the backend acks {@code request} with NEED_REPLY set, accepted or refused. */
    private boolean ackedEither(int request, byte[] payload) {
        return replyAck || ackedIfAccepted(request, payload);
    }

    /** After the ack of {@code request}: a refused SET_PROTOCOL_FEATURES changed nothing. */
    private long acked(int request, byte[] payload, long ack) {
        if (request == SET_PROTOCOL_FEATURES && payload.length == 8 && ack != 0) {
            replyAck = replyAckBefore;
        }
        return ack;
    }

    /** Whether REPLY_ACK is negotiated, as far as this frontend's SET_PROTOCOL_FEATURES tell. */
    public boolean replyAck() {
        return replyAck;
    }

    /** Reads one reply; throws on EOF. */
    public Reply readReply() throws IOException {
        List<Fd> fds = new ArrayList<>();
        long deadline = replyTimeout == null ? Long.MAX_VALUE : System.nanoTime() + replyTimeout.toNanos();
        int have = 0;
        try {
            while (have < Header.SIZE) {
                awaitReadable(deadline);
                have += receive(have, Header.SIZE - have, fds);
            }
            MemorySegment b = io.rxBuffer();
            Header h = Header.decode(b);
            if (h.size() > Header.MAX_PAYLOAD) {
                throw new IOException("reply of " + h.size() + " bytes");
            }
            int size = (int) h.size();
            while (have < Header.SIZE + size) {
                awaitReadable(deadline);
                have += receive(have, Header.SIZE + size - have, fds);
            }
            byte[] payload = b.asSlice(Header.SIZE, size).toArray(ValueLayout.JAVA_BYTE);
            return new Reply(h.request(), h.flags(), payload, fds.toArray(new Fd[0]));
        } catch (IOException | RuntimeException e) {
            fds.forEach(Fd::close);
            throw e;
        }
    }

    /** Waits until the socket is readable (or at EOF); returns at once without a reply timeout. */
    private void awaitReadable(long deadline) throws IOException {
        if (deadline == Long.MAX_VALUE) {
            return;
        }
        if (readable == null) {
            readable = new Epoll(1);
            LibC.check(readable.add(socket.get(), 0), "epoll_ctl");
        }
        while (true) {
            long remaining = deadline - System.nanoTime();
            if (remaining <= 0) {
                throw new SocketTimeoutException("no reply from the backend within " + replyTimeout);
            }
            int n = readable.await((int) Math.max(1, Math.min(remaining / 1_000_000, Integer.MAX_VALUE)));
            if (n > 0) {
                return;
            }
            if (n < 0 && n != -LibC.EINTR) {
                LibC.check(n, "epoll_wait");
            }
        }
    }

    private int receive(int offset, int length, List<Fd> fds) throws IOException {
        MessageIo.Received r = io.receive(socket.get(), offset, length, true);
        fds.addAll(List.of(r.fds()));
        if (r.bytes() == 0) {
            throw new IOException("backend closed the connection");
        }
        LibC.check(r.bytes(), "recvmsg");
        return (int) r.bytes();
    }

    /** Whether the backend has closed the connection (reads EOF within {@code timeoutMillis}). */
    public boolean isClosedByBackend(long timeoutMillis) {
        long deadline = System.currentTimeMillis() + timeoutMillis;
        do {
            MessageIo.Received r = io.receive(socket.get(), 0, 1, false);
            Fd.closeAll(r.fds());
            if (r.bytes() == 0 || (r.bytes() < 0 && r.bytes() != -LibC.EAGAIN)) {
                return true;
            }
            LockSupport.parkNanos(5_000_000); // returns at once, and keeps the flag, when interrupted
        } while (System.currentTimeMillis() < deadline && !Thread.currentThread().isInterrupted());
        return false;
    }

    // ---- requests ---------------------------------------------------------------------------

    /** Sends a request that the backend answers with a payload, and returns it. */
    public Reply call(int request, byte[] payload, Fd... fds) throws IOException {
        send(request, Header.VERSION, payload, fds);
        Reply r = readReply();
        if (r.request() != request || (r.flags() & Header.REPLY) == 0) {
            throw new IOException("unexpected reply " + MessageType.name(r.request()) + " flags " + r.flags());
        }
        return r;
    }

    /**
     * Sends a request without a payload reply as QEMU does: with REPLY_ACK negotiated it asks for
     * an ack and returns it (0 = success), else returns 0 at once.
     */
    public long request(int request, byte[] payload, Fd... fds) throws IOException {
        if (!ackedIfAccepted(request, payload)) {
            send(request, Header.VERSION, payload, fds);
            return 0;
        }
        send(request, Header.VERSION | Header.NEED_REPLY, payload, fds);
        Reply r = readReply();
        if (r.request() != request) {
            throw new IOException("ack for " + MessageType.name(r.request()) + " instead of " + MessageType.name(request));
        }
        return acked(request, payload, r.u64());
    }

    /**
     * Sends a request with NEED_REPLY set and returns the backend's ack (0 = success). For
     * requests that have no payload reply of their own, once REPLY_ACK is negotiated (or with
     * the SET_PROTOCOL_FEATURES that negotiates it): without it the backend sends no ack, so this
     * fails at once rather than wait for one.
     */
    public long requestWithAck(int request, byte[] payload, Fd... fds) throws IOException {
        if (!ackedEither(request, payload)) {
            throw new IllegalStateException("REPLY_ACK is not negotiated: the backend will not ack "
                    + MessageType.name(request));
        }
        send(request, Header.VERSION | Header.NEED_REPLY, payload, fds);
        Reply r = readReply();
        Fd.closeAll(r.fds());
        if (r.request() != request || r.flags() != (Header.VERSION | Header.REPLY) || r.payload().length != 8) {
            throw new IOException("expected an ack for " + MessageType.name(request) + ", got " + MessageType.name(r.request())
                    + " flags 0x" + Integer.toHexString(r.flags()) + " with " + r.payload().length + " bytes");
        }
        return acked(request, payload, r.u64());
    }

    public long getFeatures() throws IOException {
        return call(GET_FEATURES, new byte[0]).u64();
    }

    public long setFeatures(long features) throws IOException {
        return request(SET_FEATURES, u64(features));
    }

    public long getProtocolFeatures() throws IOException {
        return call(GET_PROTOCOL_FEATURES, new byte[0]).u64();
    }

    /**
     * Acknowledges protocol features without asking for an ack, as QEMU does; REPLY_ACK among them
     * turns on acks for later requests.
     */
    public void setProtocolFeatures(long features) throws IOException {
        send(SET_PROTOCOL_FEATURES, Header.VERSION, u64(features));
    }

    public long getQueueNum() throws IOException {
        return call(GET_QUEUE_NUM, new byte[0]).u64();
    }

    public long getMaxMemSlots() throws IOException {
        return call(GET_MAX_MEM_SLOTS, new byte[0]).u64();
    }

    public long setOwner() throws IOException {
        return request(SET_OWNER, new byte[0]);
    }

    /** SET_MEM_TABLE with every region of {@code ram}, one fd each (the same memfd). */
    public long setMemTable(GuestRam ram) throws IOException {
        int n = ram.regionCount();
        List<RegionDescription> regions = new ArrayList<>();
        Fd[] fds = new Fd[n];
        for (int i = 0; i < n; i++) {
            regions.add(region(ram, i));
            fds[i] = ram.fd();
        }
        return request(SET_MEM_TABLE, new MemoryTable(regions).encode(), fds);
    }

    /** ADD_MEM_REG for region {@code i} of {@code ram}. */
    public long addMemReg(GuestRam ram, int i) throws IOException {
        return request(ADD_MEM_REG, region(ram, i).encodeSingle(), ram.fd());
    }

    public long remMemReg(GuestRam ram, int i) throws IOException {
        return request(REM_MEM_REG, region(ram, i).encodeSingle());
    }

    /** Region {@code i} of {@code ram}: at its guest address, mapped at {@link GuestRam#hva}, file offset = gpa. */
    private static RegionDescription region(GuestRam ram, int i) {
        long gpa = ram.regionGpa(i);
        return new RegionDescription(gpa, ram.regionSize(i), GuestRam.hva(gpa), gpa);
    }

    public long setVringNum(int index, int num) throws IOException {
        return request(SET_VRING_NUM, vringState(index, num));
    }

    public long setVringBase(int index, int base) throws IOException {
        return request(SET_VRING_BASE, vringState(index, base));
    }

    public int getVringBase(int index) throws IOException {
        return call(GET_VRING_BASE, vringState(index, 0)).u32(4);
    }

    public long setVringAddr(DriverQueue q) throws IOException {
        return setVringAddr(q.index(), 0, q.descHva(), q.usedHva(), q.availHva());
    }

    public long setVringAddr(int index, int flags, long desc, long used, long avail) throws IOException {
        return request(SET_VRING_ADDR, new VringAddress(index, flags, desc, used, avail, 0).encode());
    }

    public long setVringKick(int index, Fd fd) throws IOException {
        return vringFd(SET_VRING_KICK, index, fd);
    }

    public long setVringCall(int index, Fd fd) throws IOException {
        return vringFd(SET_VRING_CALL, index, fd);
    }

    public long setVringErr(int index, Fd fd) throws IOException {
        return vringFd(SET_VRING_ERR, index, fd);
    }

    private long vringFd(int request, int index, Fd fd) throws IOException {
        return fd == null ? request(request, new VringFd(index, true).encode())
                : request(request, new VringFd(index, false).encode(), fd);
    }

    public long setVringEnable(int index, boolean enable) throws IOException {
        return request(SET_VRING_ENABLE, vringState(index, enable ? 1 : 0));
    }

    public long setStatus(int status) throws IOException {
        return request(SET_STATUS, u64(status));
    }

    public long getStatus() throws IOException {
        return call(GET_STATUS, new byte[0]).u64();
    }

    /** GET_CONFIG of {@code size} bytes at {@code offset}; returns the config bytes. */
    public byte[] getConfig(int offset, int size) throws IOException {
        Reply r = call(GET_CONFIG, new ConfigRequest(offset, size, 0, new byte[size]).encode());
        byte[] out = new byte[r.payload().length - 12];
        System.arraycopy(r.payload(), 12, out, 0, out.length);
        return out;
    }

    public long setConfig(int offset, byte[] data) throws IOException {
        return request(SET_CONFIG, new ConfigRequest(offset, data.length, 1, data).encode());
    }

    /** The inflight region the backend handed out: its memfd and layout. */
    public record Inflight(Fd fd, long size, int queues, int queueSize) implements AutoCloseable {
        @Override
        public void close() {
            fd.close();
        }
    }

    /** GET_INFLIGHT_FD: asks the backend for a fresh inflight region (INFLIGHT_SHMFD). */
    public Inflight getInflightFd(int queues, int queueSize) throws IOException {
        Reply r = call(GET_INFLIGHT_FD, new InflightRequest(0, 0, queues, queueSize).encode());
        if (r.fds().length != 1) {
            Fd.closeAll(r.fds());
            throw new IOException("GET_INFLIGHT_FD reply with " + r.fds().length + " fds");
        }
        byte[] b = r.payload();
        return new Inflight(r.fds()[0], Payload.u64(b, 0), Payload.u16(b, 16), Payload.u16(b, 18));
    }

    /** SET_INFLIGHT_FD: gives the backend a region (after a backend restart: the old one). */
    public long setInflightFd(Inflight inflight) throws IOException {
        return request(SET_INFLIGHT_FD,
                new InflightRequest(inflight.size(), 0, inflight.queues(), inflight.queueSize()).encode(), inflight.fd());
    }

    // ---- QEMU 7.2 sequences -----------------------------------------------------------------

    /**
     * Connect-time handshake as QEMU 7.2 does it (reference §4.1 A / §4.2 A): features, protocol
     * features (all offered ones we know, never in-band notifications), queue num, mem slots,
     * owner and features again. The masked call/err eventfds QEMU sends next are left to the
     * caller. Returns the device features offered, as this frontend's driver takes them: without
     * RING_PACKED and IN_ORDER unless {@link #driverRings} asked for them.
     */
    public long handshakeLikeQemu(int queues) throws IOException {
        long features = getFeatures();
        long pf = getProtocolFeatures() & ~FeaturePolicy.NEVER_PROTOCOL_FEATURES;
        setProtocolFeatures(pf);
        if ((pf & ProtocolFeatures.bit(ProtocolFeatures.MQ)) != 0 && getQueueNum() < queues) {
            throw new IOException("backend has fewer than " + queues + " queues");
        }
        if ((pf & ProtocolFeatures.bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS)) != 0) {
            getMaxMemSlots();
        }
        setOwner();
        getFeatures();
        return driverTakes(features);
    }

    /**
     * DRIVER_OK as QEMU 7.2 sends it for a blk-style device (reference §4.2 B): features, memory
     * table, then per queue num/base/addr/kick/call and enable, then the status with DRIVER_OK.
     * The ring features acked follow the queues: RING_PACKED for packed ones, IN_ORDER if they
     * read used elements in order. The base is 0 for split rings; for packed ones where the queue
     * stands in QEMU's layout (a fresh one: positions 0, wrap counters 1).
     */
    public void startLikeQemu(long features, GuestRam ram, DriverQueue... queues) throws IOException {
        long[] bases = new long[queues.length];
        for (int i = 0; i < queues.length; i++) {
            bases[i] = queues[i].isPacked() ? Integer.toUnsignedLong(queues[i].base()) : 0;
        }
        startLikeQemu(features, ram, bases, queues);
    }

    /**
     * As {@link #startLikeQemu(long, GuestRam, DriverQueue...)}, SET_VRING_BASE sending
     * {@code bases[i]} for queue {@code i}: what QEMU believes, e.g. after a backend crash, where
     * QEMU 7.2 knows nothing newer of a packed ring than the base of its last start.
     */
    public void startLikeQemu(long features, GuestRam ram, long[] bases, DriverQueue... queues) throws IOException {
        long rings = 0;
        if (queues.length > 0) {
            rings = (queues[0].isPacked() ? VirtioFeatures.bit(VirtioFeatures.RING_PACKED) : 0)
                    | (queues[0].inOrder() ? VirtioFeatures.bit(VirtioFeatures.IN_ORDER) : 0);
        }
        features = (features & ~RING_FEATURES) | rings;
        check(setFeatures(features | VirtioFeatures.bit(VirtioFeatures.PROTOCOL_FEATURES)), "SET_FEATURES");
        check(setMemTable(ram), "SET_MEM_TABLE");
        for (int i = 0; i < queues.length; i++) {
            DriverQueue q = queues[i];
            check(setVringNum(q.index(), q.size()), "SET_VRING_NUM");
            check(setVringBase(q.index(), (int) bases[i]), "SET_VRING_BASE");
            check(setVringAddr(q), "SET_VRING_ADDR");
            check(setVringKick(q.index(), q.kickFd()), "SET_VRING_KICK");
            check(setVringCall(q.index(), q.callFd()), "SET_VRING_CALL");
        }
        for (DriverQueue q : queues) {
            check(setVringEnable(q.index(), true), "SET_VRING_ENABLE");
        }
        check(setStatus(0x0F), "SET_STATUS");
    }

    /** Guest driver reset / VM stop (reference §4.2 C): status 0, disable, GET_VRING_BASE each. */
    public int[] stopLikeQemu(DriverQueue... queues) throws IOException {
        setStatus(0);
        for (DriverQueue q : queues) {
            setVringEnable(q.index(), false);
        }
        int[] bases = new int[queues.length];
        for (int i = 0; i < queues.length; i++) {
            bases[i] = getVringBase(queues[i].index());
        }
        return bases;
    }

    private static void check(long ack, String what) throws IOException {
        if (ack != 0) {
            throw new IOException(what + " refused by the backend");
        }
    }

    public static byte[] u64(long v) {
        return Payload.encodeU64(v);
    }

    public static byte[] vringState(int index, int num) {
        return VringState.encode(index, num);
    }

    /** Closes the connection; closing again does nothing. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (readable != null) {
            readable.close();
        }
        socket.close();
        io.close();
    }
}
