package io.jvhost.core.protocol;

import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.InvalidMemoryException;
import io.jvhost.core.memory.MemoryMap;
import io.jvhost.core.memory.MemoryMap.RegionSpec;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.Barrier;
import io.jvhost.core.runtime.QueueConfig;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.ring.InflightLog;
import io.jvhost.core.ring.VirtQueue;
import io.jvhost.core.device.VirtioFeatures;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static io.jvhost.core.protocol.MessageType.*;

/**
 * The backend side of one frontend connection: validates each message, keeps the negotiated state
 * and drives the backend's queues. Messages are handled strictly one at a time: when a message
 * needs the pollers (a queue starts, stops or changes), the reply and the next message wait until
 * every poller involved has acknowledged.
 *
 * <p>Control thread only.
 */
public final class Session {
    private static final Logger LOG = LoggerFactory.getLogger(Session.class);
    static final int VRING_NOFD = 0x100, VRING_INDEX_MASK = 0xFF;
    static final long VRING_F_LOG = 1;
    static final int MAX_CONFIG = 256;

    /** Where replies go. */
    public interface Output {
        void reply(int request, byte[] payload, int[] fds);

        void drop(String reason);
    }

    private final Backend backend;
    private final VirtioDevice device;
    private final Output out;
    private final String name;
    private final VringState[] vrings;
    private final MemoryMap memory = new MemoryMap();
    private final long offeredFeatures;
    private final long offeredProtocolFeatures;
    private long ackedFeatures;
    private long ackedProtocolFeatures;
    private boolean owner;
    private int status;
    private Fd backendChannel;
    /** The INFLIGHT_SHMFD region: per queue {@link InflightLog#queueRegionSize} bytes; null until given. */
    private MemorySegment inflightRegion;
    private java.lang.foreign.Arena inflightArena;
    private int inflightQueues, inflightQueueSize;
    /** The dirty log from SET_LOG_BASE; written only while LOG_ALL is acked. */
    private DirtyLog dirtyLog;
    private java.lang.foreign.Arena logArena;
    private boolean closed;
    private long messages;
    private long messagesRefused;

    /** Control-side state of one vring; the queue object itself belongs to a poller while running. */
    static final class VringState {
        int num;
        boolean addrSet;
        long descHva, usedHva, availHva, logGpa;
        int addrFlags;
        int base;
        boolean baseSet = true;
        Fd kick;
        boolean kickNoFd;
        Fd call;
        Fd err;
        boolean enabled;
        boolean started;
        boolean running;
    }

    /** What handling one message produced. */
    private final class Context {
        final Message message;
        final Barrier barrier;
        final List<Runnable> afterAcks = new ArrayList<>();
        final List<Fd> toClose = new ArrayList<>();
        byte[] reply;
        int[] replyFds;
        boolean failed;

        Context(Message message, Runnable resume) {
            this.message = message;
            this.barrier = new Barrier(() -> finish(this, resume));
        }
    }

    public Session(String name, Backend backend, Output out) {
        this.name = name;
        this.backend = backend;
        this.device = backend.device();
        this.out = out;
        this.vrings = new VringState[backend.queueCount()];
        for (int i = 0; i < vrings.length; i++) {
            vrings[i] = new VringState();
        }
        this.offeredFeatures = device.features() | VirtioFeatures.bit(VirtioFeatures.VERSION_1)
                | VirtioFeatures.bit(VirtioFeatures.RING_EVENT_IDX) | VirtioFeatures.bit(VirtioFeatures.RING_INDIRECT_DESC)
                | VirtioFeatures.bit(VirtioFeatures.PROTOCOL_FEATURES) | VirtioFeatures.bit(VirtioFeatures.LOG_ALL);
        this.offeredProtocolFeatures = (ProtocolFeatures.DEFAULT | device.protocolFeatures()) & ~ProtocolFeatures.NEVER;
    }

    /** Backend-to-frontend request: the device's configuration space changed. */
    static final int BACKEND_CONFIG_CHANGE_MSG = 2;

    /**
     * Sends CONFIG_CHANGE_MSG on the backend channel, if the frontend gave one and negotiated
     * CONFIG. Without NEED_REPLY: jvhost never waits on the backend channel while the frontend may
     * be waiting on the main one. Control thread.
     */
    public void sendConfigChange() {
        long needed = ProtocolFeatures.bit(ProtocolFeatures.BACKEND_REQ) | ProtocolFeatures.bit(ProtocolFeatures.CONFIG);
        if (closed || backendChannel == null || (ackedProtocolFeatures & needed) != needed) {
            LOG.info("{}: config changed, but the frontend has no backend channel with CONFIG to hear it", name);
            return;
        }
        try (io.jvhost.core.sys.MessageIo io = new io.jvhost.core.sys.MessageIo(Message.HEADER_SIZE)) {
            java.lang.foreign.MemorySegment tx = io.txBuffer();
            var le = java.lang.foreign.ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
            tx.set(le, 0, BACKEND_CONFIG_CHANGE_MSG);
            tx.set(le, 4, Message.VERSION);
            tx.set(le, 8, 0);
            long n = io.send(backendChannel.get(), Message.HEADER_SIZE, null);
            if (n != Message.HEADER_SIZE) {
                LOG.warn("{}: CONFIG_CHANGE_MSG not sent: {}", name, n);
            } else {
                LOG.info("{}: sent CONFIG_CHANGE_MSG", name);
            }
        }
    }

    public long messages() {
        return messages;
    }

    public long messagesRefused() {
        return messagesRefused;
    }

    /** The guest memory table as mapped now. */
    public MemoryMap memory() {
        return memory;
    }

    /**
     * Handles one message. Takes ownership of its fds. {@code resume} runs (on the control thread)
     * once the reply, if any, is sent and the next message may be read.
     */
    public void handle(Message m, Runnable resume) {
        messages++;
        if (LOG.isDebugEnabled()) {
            LOG.debug("{} <- {}", name, Trace.describe(m));
        }
        Context ctx = new Context(m, resume);
        try {
            if (closed) {
                throw new ProtocolException("session closed", true);
            }
            dispatch(ctx);
        } catch (ProtocolException e) {
            refuse(ctx, e);
        } catch (RuntimeException e) {
            backend.controlFailed();
            LOG.error("{}: {} failed", name, m.name(), e);
            refuse(ctx, new ProtocolException(e.toString(), MessageType.hasOwnReply(m.request())));
        } finally {
            m.closeFds();
        }
        ctx.barrier.seal();
    }

    private void refuse(Context ctx, ProtocolException e) {
        messagesRefused++;
        ctx.failed = true;
        ctx.reply = null;
        LOG.warn("{}: refused {}: {}{}", name, ctx.message.name(), e.getMessage(), e.fatal() ? " (closing connection)" : "");
        if (e.fatal() || MessageType.hasOwnReply(ctx.message.request())) {
            ctx.afterAcks.add(() -> out.drop(ctx.message.name() + ": " + e.getMessage()));
        }
    }

    private void finish(Context ctx, Runnable resume) {
        for (Runnable r : ctx.afterAcks) {
            r.run();
        }
        int request = ctx.message.request();
        if (ctx.reply != null) {
            out.reply(request, ctx.reply, ctx.replyFds);
        } else if (!MessageType.hasOwnReply(request) && ctx.message.needsReply()) {
            out.reply(request, u64(ctx.failed ? 1 : 0), null);
        }
        ctx.toClose.forEach(Fd::close); // after the reply: it may carry one of them
        resume.run();
    }

    // ---- dispatch -------------------------------------------------------------------------

    private void dispatch(Context c) throws ProtocolException {
        Message m = c.message;
        switch (m.request()) {
            case GET_FEATURES -> {
                expect(m, 0, 0);
                c.reply = u64(offeredFeatures);
            }
            case SET_FEATURES -> setFeatures(c);
            case SET_OWNER -> {
                expect(m, 0, 0);
                owner = true;
            }
            case RESET_OWNER, RESET_DEVICE -> {
                expect(m, 0, 0);
                resetDevice(c);
            }
            case GET_PROTOCOL_FEATURES -> {
                expect(m, 0, 0);
                c.reply = u64(offeredProtocolFeatures);
            }
            case SET_PROTOCOL_FEATURES -> {
                expect(m, 8, 0);
                long f = m.u64(0);
                if ((f & ~offeredProtocolFeatures) != 0) {
                    throw new ProtocolException(String.format("protocol features 0x%x not offered", f & ~offeredProtocolFeatures), false);
                }
                ackedProtocolFeatures = f;
            }
            case GET_QUEUE_NUM -> {
                expect(m, 0, 0);
                c.reply = u64(backend.queueCount());
            }
            case GET_MAX_MEM_SLOTS -> {
                expect(m, 0, 0);
                c.reply = u64(MemoryMap.MAX_SLOTS);
            }
            case SET_MEM_TABLE -> setMemTable(c);
            case ADD_MEM_REG -> addMemReg(c);
            case REM_MEM_REG -> remMemReg(c);
            case SET_VRING_NUM -> setVringNum(c);
            case SET_VRING_ADDR -> setVringAddr(c);
            case SET_VRING_BASE -> setVringBase(c);
            case GET_VRING_BASE -> getVringBase(c);
            case SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR -> setVringFd(c);
            case SET_VRING_ENABLE -> setVringEnable(c);
            case SET_BACKEND_REQ_FD -> {
                expect(m, 0, 1);
                if (backendChannel != null) {
                    c.toClose.add(backendChannel);
                }
                backendChannel = take(m, 0);
            }
            case GET_CONFIG -> getConfig(c);
            case SET_CONFIG -> setConfig(c);
            case SET_STATUS -> {
                expect(m, 8, 0);
                long s = m.u64(0);
                if (s < 0 || s > 0xFF) {
                    throw new ProtocolException("status " + s + " is not a byte", false);
                }
                // Status 0 arrives before the last GET_VRING_BASE (QEMU 7.2): ring state stays.
                status = (int) s;
            }
            case GET_STATUS -> {
                expect(m, 0, 0);
                c.reply = u64(status);
            }
            case NET_SET_MTU -> {
                expect(m, 8, 0);
                long mtu = m.u64(0);
                if (mtu < 68 || mtu > 65535 || !device.setMtu((int) mtu)) {
                    throw new ProtocolException("MTU " + mtu + " refused", false);
                }
            }
            case SEND_RARP -> {
                expect(m, 8, 0);
                if (!device.sendRarp(m.u64(0) & 0xFFFF_FFFF_FFFFL)) {
                    throw new ProtocolException("this device does not send RARP", false);
                }
            }
            case SET_LOG_BASE -> setLogBase(c);
            case GET_INFLIGHT_FD -> getInflightFd(c);
            case SET_INFLIGHT_FD -> setInflightFd(c);
            default -> throw new ProtocolException("not supported by this backend", false);
        }
    }

    private static void expect(Message m, int size, int fds) throws ProtocolException {
        if (m.size() != size) {
            throw new ProtocolException("payload of " + m.size() + " bytes, expected " + size, MessageType.hasOwnReply(m.request()));
        }
        if (m.fds().length != fds) {
            throw new ProtocolException(m.fds().length + " fds, expected " + fds, MessageType.hasOwnReply(m.request()));
        }
    }

    private static Fd take(Message m, int i) {
        Fd fd = m.fds()[i];
        m.fds()[i] = null;
        return fd;
    }

    private int vringIndex(Message m, long raw) throws ProtocolException {
        if (raw < 0 || raw >= vrings.length) {
            throw new ProtocolException("vring index " + raw + " out of 0.." + (vrings.length - 1),
                    MessageType.hasOwnReply(m.request()));
        }
        return (int) raw;
    }

    private void setFeatures(Context c) throws ProtocolException {
        Message m = c.message;
        expect(m, 8, 0);
        long f = m.u64(0);
        if ((f & ~offeredFeatures) != 0) {
            throw new ProtocolException(String.format("features 0x%x were not offered", f & ~offeredFeatures), false);
        }
        ackedFeatures = f;
        device.featuresAcked(f);
        reconcileAll(c, true);
    }

    private void setMemTable(Context c) throws ProtocolException {
        Message m = c.message;
        if (m.size() < 8) {
            throw new ProtocolException("memory table of " + m.size() + " bytes", false);
        }
        long n = Integer.toUnsignedLong(m.u32(0));
        if (n > MemoryMap.MAX_TABLE_REGIONS || m.size() < 8 + 32 * n || m.size() > 8 + 32 * MemoryMap.MAX_TABLE_REGIONS) {
            throw new ProtocolException("memory table of " + n + " regions in " + m.size() + " bytes", false);
        }
        if (m.fds().length != n) {
            throw new ProtocolException(m.fds().length + " fds for " + n + " regions", false);
        }
        List<RegionSpec> specs = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            specs.add(region(m, 8 + 32 * i));
        }
        Fd[] fds = new Fd[(int) n];
        for (int i = 0; i < n; i++) {
            fds[i] = take(m, i);
        }
        try {
            memory.replace(specs, fds);
        } catch (InvalidMemoryException e) {
            throw new ProtocolException(e.getMessage(), false);
        }
        LOG.info("{}: memory table {}", name, memory);
        memoryChanged(c);
    }

    private static RegionSpec region(Message m, int offset) {
        return new RegionSpec(m.u64(offset), m.u64(offset + 8), m.u64(offset + 16), m.u64(offset + 24));
    }

    private void addMemReg(Context c) throws ProtocolException {
        Message m = c.message;
        expect(m, 40, 1);
        try {
            memory.add(region(m, 8), take(m, 0));
        } catch (InvalidMemoryException e) {
            throw new ProtocolException(e.getMessage(), false);
        }
        memoryChanged(c);
    }

    private void remMemReg(Context c) throws ProtocolException {
        Message m = c.message;
        if (m.size() != 40 || m.fds().length > 1) {
            throw new ProtocolException("REM_MEM_REG of " + m.size() + " bytes with " + m.fds().length + " fds", false);
        }
        try {
            memory.remove(region(m, 8));
        } catch (InvalidMemoryException e) {
            throw new ProtocolException(e.getMessage(), false);
        }
        memoryChanged(c);
    }

    /** Running queues move to the new table; old mappings go once every poller has moved. */
    private void memoryChanged(Context c) {
        reconcileAll(c, true);
        c.afterAcks.add(memory::unmapRetired);
    }

    private void setVringNum(Context c) throws ProtocolException {
        Message m = c.message;
        expect(m, 8, 0);
        int i = vringIndex(m, Integer.toUnsignedLong(m.u32(0)));
        long num = Integer.toUnsignedLong(m.u32(4));
        int max = Math.min(VirtQueue.MAX_SIZE, device.maxQueueSize());
        if (num == 0 || Long.bitCount(num) != 1 || num > max) {
            throw new ProtocolException("queue size " + num + " is not a power of two up to " + max, false);
        }
        vrings[i].num = (int) num;
        reconcile(c, i, true);
    }

    private void setVringAddr(Context c) throws ProtocolException {
        Message m = c.message;
        expect(m, 40, 0);
        int i = vringIndex(m, Integer.toUnsignedLong(m.u32(0)));
        long flags = Integer.toUnsignedLong(m.u32(4));
        long desc = m.u64(8), used = m.u64(16), avail = m.u64(24), log = m.u64(32);
        if ((flags & ~VRING_F_LOG) != 0) {
            throw new ProtocolException("unknown vring address flags 0x" + Long.toHexString(flags), false);
        }
        if ((desc & 15) != 0 || (avail & 1) != 0 || (used & 3) != 0) {
            throw new ProtocolException(String.format("misaligned rings desc 0x%x avail 0x%x used 0x%x", desc, avail, used), false);
        }
        VringState s = vrings[i];
        s.descHva = desc;
        s.usedHva = used;
        s.availHva = avail;
        s.logGpa = log;
        s.addrFlags = (int) flags;
        s.addrSet = true;
        reconcile(c, i, true);
    }

    private void setVringBase(Context c) throws ProtocolException {
        Message m = c.message;
        expect(m, 8, 0);
        int i = vringIndex(m, Integer.toUnsignedLong(m.u32(0)));
        long base = Integer.toUnsignedLong(m.u32(4));
        if (base > 0xFFFF) {
            throw new ProtocolException("split ring base " + base + " beyond 16 bits", false);
        }
        vrings[i].base = (int) base;
        vrings[i].baseSet = true;
        reconcile(c, i, true);
    }

    private void getVringBase(Context c) throws ProtocolException {
        Message m = c.message;
        expect(m, 8, 0);
        int i = vringIndex(m, Integer.toUnsignedLong(m.u32(0)));
        VringState s = vrings[i];
        s.started = false; // stopped until the next kick fd; state is kept
        reconcile(c, i, false);
        if (s.kick != null) {
            c.toClose.add(s.kick);
            s.kick = null;
        }
        c.afterAcks.add(() -> c.reply = vringState(i, s.base));
    }

    private void setVringFd(Context c) throws ProtocolException {
        Message m = c.message;
        if (m.size() != 8) {
            throw new ProtocolException("payload of " + m.size() + " bytes, expected 8", false);
        }
        long v = m.u64(0);
        if ((v & ~(long) (VRING_NOFD | VRING_INDEX_MASK)) != 0) {
            throw new ProtocolException("unknown bits in 0x" + Long.toHexString(v), false);
        }
        boolean noFd = (v & VRING_NOFD) != 0;
        int i = vringIndex(m, v & VRING_INDEX_MASK);
        if (m.fds().length != (noFd ? 0 : 1)) {
            throw new ProtocolException(m.fds().length + " fds with NOFD " + noFd, false);
        }
        Fd fd = noFd ? null : take(m, 0);
        VringState s = vrings[i];
        switch (m.request()) {
            case SET_VRING_KICK -> {
                replace(c, s.kick);
                s.kick = fd;
                s.kickNoFd = noFd;
                s.started = true;
                reconcile(c, i, true);
            }
            case SET_VRING_CALL -> {
                replace(c, s.call);
                s.call = fd;
                if (s.running) {
                    c.barrier.expect();
                    backend.poller(i).setCallFd(backend.queue(i), fd == null ? -1 : fd.get(), c.barrier::arrive);
                }
            }
            default -> {
                replace(c, s.err);
                s.err = fd;
                reconcile(c, i, true);
            }
        }
    }

    private static void replace(Context c, Fd old) {
        if (old != null) {
            c.toClose.add(old); // closed only after the pollers let go of it
        }
    }

    private void setVringEnable(Context c) throws ProtocolException {
        Message m = c.message;
        expect(m, 8, 0);
        int i = vringIndex(m, Integer.toUnsignedLong(m.u32(0)));
        long v = Integer.toUnsignedLong(m.u32(4));
        if (v > 1) {
            throw new ProtocolException("enable value " + v, false);
        }
        vrings[i].enabled = v == 1;
        reconcile(c, i, false);
    }

    /**
     * SET_LOG_BASE (LOG_SHMFD): maps the frontend's dirty bitmap and answers with an empty reply,
     * as QEMU waits for one. Running queues switch to the new log.
     */
    private void setLogBase(Context c) throws ProtocolException {
        Message m = c.message;
        if ((ackedProtocolFeatures & ProtocolFeatures.bit(ProtocolFeatures.LOG_SHMFD)) == 0) {
            throw new ProtocolException("LOG_SHMFD was not negotiated", false);
        }
        expect(m, 16, 1);
        long size = m.u64(0), offset = m.u64(8);
        try (Fd fd = take(m, 0)) {
            long fileSize = LibC.fileSize(fd.get());
            if (size <= 0 || offset < 0 || offset + size < 0 || fileSize < offset + size) {
                throw new ProtocolException("log of " + size + " bytes at " + offset + " in a file of " + fileSize, false);
            }
            java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofShared();
            try {
                DirtyLog log = new DirtyLog(io.jvhost.core.sys.Mappings.map(fd.get(), offset, size, arena));
                java.lang.foreign.Arena old = logArena;
                dirtyLog = log;
                logArena = arena;
                reconcileAll(c, true);
                if (old != null) {
                    c.afterAcks.add(old::close);
                }
            } catch (io.jvhost.core.sys.NativeException e) {
                arena.close();
                throw new ProtocolException("cannot map the log: " + e.getMessage(), false);
            }
        }
        LOG.info("{}: dirty log of {} bytes (migration)", name, size);
        c.reply = new byte[0];
    }

    private boolean inflightOffered() {
        return (offeredProtocolFeatures & ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD)) != 0;
    }

    private record InflightRequest(long mmapSize, long mmapOffset, int queues, int queueSize) {}

    private InflightRequest inflightRequest(Message m) throws ProtocolException {
        boolean fatal = MessageType.hasOwnReply(m.request());
        if (!inflightOffered()) {
            throw new ProtocolException("INFLIGHT_SHMFD was not offered", fatal);
        }
        if (m.size() < 20 || m.size() > 24) {
            throw new ProtocolException("inflight payload of " + m.size() + " bytes", fatal);
        }
        var b = m.buffer();
        int queues = Short.toUnsignedInt(b.getShort(16)), queueSize = Short.toUnsignedInt(b.getShort(18));
        if (queues < 1 || queues > vrings.length || queueSize < 1 || Integer.bitCount(queueSize) != 1
                || queueSize > VirtQueue.MAX_SIZE) {
            throw new ProtocolException("inflight for " + queues + " queues of " + queueSize, fatal);
        }
        return new InflightRequest(b.getLong(0), b.getLong(8), queues, queueSize);
    }

    /** A fresh, zeroed region (QEMU asks again after every guest reset). */
    private void getInflightFd(Context c) throws ProtocolException {
        Message m = c.message;
        InflightRequest r = inflightRequest(m);
        if (m.fds().length != 0) {
            throw new ProtocolException(m.fds().length + " fds on GET_INFLIGHT_FD", true);
        }
        long perQueue = InflightLog.queueRegionSize(r.queueSize());
        long total = perQueue * r.queues();
        try {
            Fd fd = io.jvhost.core.sys.Mappings.memfd("jvhost-inflight", total);
            java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofShared();
            MemorySegment region = io.jvhost.core.sys.Mappings.map(fd.get(), 0, total, arena);
            for (int q = 0; q < r.queues(); q++) {
                InflightLog.initialize(region.asSlice(q * perQueue, perQueue), r.queueSize());
            }
            useInflight(c, region, arena, r.queues(), r.queueSize());
            c.reply = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN).putLong(total).putLong(0)
                    .putShort((short) r.queues()).putShort((short) r.queueSize()).array();
            c.replyFds = new int[] {fd.get()};
            c.toClose.add(fd); // closed after the reply carried it; our mapping stays
        } catch (io.jvhost.core.sys.NativeException e) {
            throw new ProtocolException("cannot create the inflight region: " + e.getMessage(), true);
        }
    }

    /** The region from an earlier backend (after a crash) or from GET_INFLIGHT_FD: requests in it resume. */
    private void setInflightFd(Context c) throws ProtocolException {
        Message m = c.message;
        InflightRequest r = inflightRequest(m);
        if (m.fds().length != 1) {
            throw new ProtocolException(m.fds().length + " fds on SET_INFLIGHT_FD", false);
        }
        long need = InflightLog.queueRegionSize(r.queueSize()) * r.queues();
        if (r.mmapSize() < need || r.mmapOffset() < 0 || r.mmapOffset() + r.mmapSize() < 0) {
            throw new ProtocolException("inflight region of " + r.mmapSize() + " bytes, need " + need, false);
        }
        try (Fd fd = take(m, 0)) {
            long fileSize = LibC.fileSize(fd.get());
            if (fileSize < r.mmapOffset() + need) {
                throw new ProtocolException("inflight fd holds " + fileSize + " bytes, need " + (r.mmapOffset() + need), false);
            }
            java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofShared();
            try {
                useInflight(c, io.jvhost.core.sys.Mappings.map(fd.get(), r.mmapOffset(), need, arena), arena, r.queues(),
                        r.queueSize());
                LOG.info("{}: inflight region for {} queues of {} from the frontend", name, r.queues(), r.queueSize());
            } catch (io.jvhost.core.sys.NativeException e) {
                arena.close();
                throw new ProtocolException("cannot map the inflight region: " + e.getMessage(), false);
            }
        }
    }

    private void useInflight(Context c, MemorySegment region, java.lang.foreign.Arena arena, int queues, int queueSize) {
        java.lang.foreign.Arena old = inflightArena;
        inflightRegion = region;
        inflightArena = arena;
        inflightQueues = queues;
        inflightQueueSize = queueSize;
        reconcileAll(c, true);
        if (old != null) {
            c.afterAcks.add(old::close); // unmapped once no poller writes to it
        }
    }

    private MemorySegment inflightFor(int i, VringState s) {
        if (inflightRegion == null || i >= inflightQueues) {
            return null;
        }
        if (s.num != inflightQueueSize) {
            LOG.warn("{}: queue {} has size {} but the inflight region was made for {}; not tracking it",
                    name, i, s.num, inflightQueueSize);
            return null;
        }
        long per = InflightLog.queueRegionSize(inflightQueueSize);
        return inflightRegion.asSlice(i * per, per);
    }

    private void getConfig(Context c) throws ProtocolException {
        Message m = c.message;
        ConfigRequest r = configRequest(m);
        byte[] config = device.config();
        byte[] reply = new byte[12 + r.size];
        ByteBuffer b = ByteBuffer.wrap(reply).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(r.offset).putInt(r.size).putInt(r.flags);
        // Reads past the device's struct (up to 256 bytes) answer zeros so generic frontends attach.
        if (r.offset < config.length) {
            System.arraycopy(config, r.offset, reply, 12, Math.min(r.size, config.length - r.offset));
        }
        c.reply = reply;
    }

    private void setConfig(Context c) throws ProtocolException {
        Message m = c.message;
        ConfigRequest r = configRequest(m);
        byte[] data = new byte[r.size];
        System.arraycopy(m.payload(), 12, data, 0, r.size);
        if (!device.writeConfig(r.offset, data)) {
            throw new ProtocolException("device refused config write at " + r.offset + "+" + r.size, false);
        }
    }

    private record ConfigRequest(int offset, int size, int flags) {}

    private static ConfigRequest configRequest(Message m) throws ProtocolException {
        boolean fatal = MessageType.hasOwnReply(m.request());
        if (m.size() < 12 || m.fds().length != 0) {
            throw new ProtocolException("config message of " + m.size() + " bytes, " + m.fds().length + " fds", fatal);
        }
        long offset = Integer.toUnsignedLong(m.u32(0)), size = Integer.toUnsignedLong(m.u32(4));
        if (size > MAX_CONFIG || offset > MAX_CONFIG || offset + size > MAX_CONFIG || m.size() != 12 + size) {
            throw new ProtocolException("config range " + offset + "+" + size + " in " + m.size() + " bytes", fatal);
        }
        return new ConfigRequest((int) offset, (int) size, m.u32(8));
    }

    private void resetDevice(Context c) {
        for (VringState s : vrings) {
            s.started = false;
            s.enabled = false;
        }
        reconcileAll(c, false);
        c.afterAcks.add(() -> {
            for (int i = 0; i < vrings.length; i++) {
                closeVringFds(vrings[i]);
                vrings[i] = new VringState();
            }
            ackedFeatures = 0;
            status = 0;
            device.reset();
        });
    }

    private static void closeVringFds(VringState s) {
        for (Fd fd : new Fd[] {s.kick, s.call, s.err}) {
            if (fd != null) {
                fd.close();
            }
        }
        s.kick = s.call = s.err = null;
    }

    // ---- queues ---------------------------------------------------------------------------

    private boolean enabled(VringState s) {
        // Without PROTOCOL_FEATURES a ring is enabled from the start (vhost-user spec, "Ring states").
        return s.enabled || !VirtioFeatures.has(ackedFeatures, VirtioFeatures.PROTOCOL_FEATURES);
    }

    private void reconcileAll(Context c, boolean reconfigure) {
        for (int i = 0; i < vrings.length; i++) {
            reconcile(c, i, reconfigure);
        }
    }

    /**
     * Brings queue {@code i} to what its state asks for: detached, attached, or (when
     * {@code reconfigure}) detached and attached again with the new settings.
     */
    private void reconcile(Context c, int i, boolean reconfigure) {
        VringState s = vrings[i];
        boolean want = !closed && s.started && enabled(s) && s.addrSet && s.num > 0 && memory.size() > 0;
        if (s.running && (!want || reconfigure)) {
            s.running = false;
            c.barrier.expect();
            backend.poller(i).detach(i, last -> {
                if (last >= 0) {
                    s.base = last;
                }
                c.barrier.arrive();
            });
        }
        if (want && !s.running) {
            QueueConfig config = queueConfig(i, s);
            if (config != null) {
                s.running = true;
                s.baseSet = false;
                c.barrier.expect();
                backend.poller(i).attach(backend.queue(i), config, c.barrier::arrive);
            }
        }
    }

    private QueueConfig queueConfig(int i, VringState s) {
        var mem = memory.current();
        MemorySegment desc = mem.translateHva(s.descHva, 16L * s.num);
        MemorySegment avail = mem.translateHva(s.availHva, 6 + 2L * s.num);
        MemorySegment used = mem.translateHva(s.usedHva, 6 + 8L * s.num);
        if (desc == null || avail == null || used == null) {
            LOG.error("{}: queue {} rings are not in guest memory (desc 0x{} avail 0x{} used 0x{}); not starting it",
                    name, i, Long.toHexString(s.descHva), Long.toHexString(s.availHva), Long.toHexString(s.usedHva));
            if (s.err != null) {
                LibC.eventfdSignal(s.err.get());
            }
            return null;
        }
        boolean logging = dirtyLog != null && VirtioFeatures.has(ackedFeatures, VirtioFeatures.LOG_ALL);
        long usedGpa = (s.addrFlags & VRING_F_LOG) != 0 ? s.logGpa : mem.hvaToGpa(s.usedHva);
        return new QueueConfig(i, s.num, desc, avail, used, mem, s.baseSet ? s.base : QueueConfig.KEEP_BASE,
                VirtioFeatures.has(ackedFeatures, VirtioFeatures.RING_EVENT_IDX),
                VirtioFeatures.has(ackedFeatures, VirtioFeatures.RING_INDIRECT_DESC),
                s.kick == null ? -1 : s.kick.get(), s.call == null ? -1 : s.call.get(),
                s.err == null ? -1 : s.err.get(), inflightFor(i, s), logging ? dirtyLog : null, usedGpa);
    }

    /**
     * Ends the session: stops every queue, then closes every fd, unmaps guest memory and resets
     * the device before running {@code done}. Control thread.
     */
    public void close(Runnable done) {
        if (closed) {
            done.run();
            return;
        }
        closed = true;
        Barrier b = new Barrier(() -> {
            for (VringState s : vrings) {
                closeVringFds(s);
            }
            if (backendChannel != null) {
                backendChannel.close();
            }
            memory.close();
            if (inflightArena != null) {
                inflightArena.close();
            }
            if (logArena != null) {
                logArena.close();
            }
            device.reset();
            LOG.info("{}: session ended after {} messages ({} refused)", name, messages, messagesRefused);
            done.run();
        });
        for (int i = 0; i < vrings.length; i++) {
            VringState s = vrings[i];
            if (s.running) {
                s.running = false;
                b.expect();
                backend.poller(i).detach(i, last -> b.arrive());
            }
        }
        b.seal();
    }

    static byte[] u64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array();
    }

    static byte[] vringState(int index, int num) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(index).putInt(num).array();
    }
}
