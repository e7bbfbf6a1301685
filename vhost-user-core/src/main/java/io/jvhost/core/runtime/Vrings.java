package io.jvhost.core.runtime;

import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.protocol.Message;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.protocol.ProtocolException;
import io.jvhost.core.protocol.VringAddress;
import io.jvhost.core.protocol.VringFd;
import io.jvhost.core.protocol.VringState;
import io.jvhost.core.ring.QueuePosition;
import io.jvhost.core.ring.VirtQueue;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;

import java.lang.foreign.MemorySegment;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The per-vring state machine: for each queue, what the frontend set (size, ring addresses,
 * base, enable, kick/call/err fds) and whether the queue runs on its poller. After each change
 * {@link #reconcile} brings the queue to what its state asks for: detached, attached with a fresh
 * {@link QueueConfig}, or both; the exchange waits for the pollers' acknowledgements.
 *
 * <p>A queue runs when it was started (a kick fd arrived and no GET_VRING_BASE since), is enabled
 * (or PROTOCOL_FEATURES was not acked: then rings start enabled), has a size and addresses, and
 * guest memory is mapped. Control thread only.
 */
final class Vrings {
    private static final Logger LOG = LoggerFactory.getLogger(Vrings.class);

    /** Control-side state of one vring; the queue object itself belongs to a poller while running. */
    private static final class Vring {
        int num;
        VringAddress address;
        /** What SET_VRING_BASE set, or the queue's base when it last stopped (see {@link QueuePosition#base()}). */
        long base;
        boolean baseSet = true;
        Fd kick, call, err;
        boolean enabled, started, running;

        void closeFds() {
            for (Fd fd : new Fd[] {kick, call, err}) {
                if (fd != null) {
                    fd.close();
                }
            }
            kick = call = err = null;
        }
    }

    private final String name;
    private final Backend backend;
    private final Negotiation negotiation;
    private final SharedRegions regions;
    private final Vring[] vrings;
    private final int maxSize;
    private boolean closed;
    /** While held no queue runs, whatever its state: a session paused for, or rebuilt by, a live upgrade. */
    private boolean held;
    /** Whether an enable value other than 0 or 1 was logged in this session (once is enough). */
    private boolean wideEnableLogged;

    Vrings(String name, Backend backend, Negotiation negotiation, SharedRegions regions) {
        this.name = name;
        this.backend = backend;
        this.negotiation = negotiation;
        this.regions = regions;
        this.vrings = new Vring[backend.queueCount()];
        for (int i = 0; i < vrings.length; i++) {
            vrings[i] = new Vring();
        }
        this.maxSize = Math.min(VirtQueue.MAX_SIZE, backend.device().maxQueueSize());
    }

    int count() {
        return vrings.length;
    }

    private int index(long raw) throws ProtocolException {
        if (raw < 0 || raw >= vrings.length) {
            throw new ProtocolException("vring index " + raw + " out of 0.." + (vrings.length - 1));
        }
        return (int) raw;
    }

    /** SET_VRING_NUM: a power of two up to the device's maximum; a packed ring may have any size up to it. */
    void setNum(Exchange x, VringState s) throws ProtocolException {
        int i = index(s.index());
        boolean packed = negotiation.has(VirtioFeatures.RING_PACKED);
        if (s.num() == 0 || (!packed && Long.bitCount(s.num()) != 1) || s.num() > maxSize) {
            throw new ProtocolException("queue size " + s.num() + " is not a power of two up to " + maxSize);
        }
        vrings[i].num = (int) s.num();
        reconcile(x, i, true);
    }

    void setAddress(Exchange x, VringAddress a) throws ProtocolException {
        int i = index(a.index());
        vrings[i].address = a;
        reconcile(x, i, true);
    }

    /**
     * SET_VRING_BASE: a split ring's 16-bit avail index, or a packed ring's positions and wrap
     * counters (avail in the low 16 bits, used in the high 16 bits, wrap counters in bits 15 and 31),
     * checked against the queue size when the queue starts.
     */
    void setBase(Exchange x, VringState s) throws ProtocolException {
        int i = index(s.index());
        if (!negotiation.has(VirtioFeatures.RING_PACKED) && s.num() > 0xFFFF) {
            throw new ProtocolException("split ring base " + s.num() + " beyond 16 bits");
        }
        vrings[i].base = s.num();
        vrings[i].baseSet = true;
        reconcile(x, i, true);
    }

    /** GET_VRING_BASE: stops the queue (state is kept) and answers where it stopped. */
    void getBase(Exchange x, VringState s) throws ProtocolException {
        int i = index(s.index());
        Vring v = vrings[i];
        v.started = false; // stopped until the next kick fd
        reconcile(x, i, false);
        x.closeAfterReply(v.kick);
        v.kick = null;
        x.afterAcks(() -> x.reply(VringState.encode(i, (int) v.base)));
    }

    /** SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR; takes the fd from the message. */
    void setFd(Exchange x, VringFd f) throws ProtocolException {
        int i = index(f.index());
        Fd fd = f.noFd() ? null : x.message.take(0);
        Vring v = vrings[i];
        switch (x.message.request()) {
            case MessageType.SET_VRING_KICK -> {
                x.closeAfterReply(v.kick); // closed only after the pollers let go of it
                v.kick = fd;
                v.started = true;
                reconcile(x, i, true);
            }
            case MessageType.SET_VRING_CALL -> {
                x.closeAfterReply(v.call);
                v.call = fd;
                if (v.running) {
                    x.expectAck();
                    backend.setCallFd(i, fd == null ? -1 : fd.get(), x::ack);
                }
            }
            default -> {
                x.closeAfterReply(v.err);
                v.err = fd;
                reconcile(x, i, true);
            }
        }
    }

    /**
     * SET_VRING_ENABLE: any non-zero num enables, as in libvhost-user and DPDK; SPDK's
     * virtio-user frontend (before v24.01) sends the queue size.
     */
    void setEnable(Exchange x, VringState s) throws ProtocolException {
        int i = index(s.index());
        if (s.num() > 1 && !wideEnableLogged) {
            wideEnableLogged = true;
            LOG.debug("{}: SET_VRING_ENABLE num {} on queue {} taken as enable", name, s.num(), i);
        }
        vrings[i].enabled = s.num() != 0;
        reconcile(x, i, false);
    }

    /** RESET_OWNER / RESET_DEVICE: stops every queue, then forgets every ring and closes its fds. */
    void reset(Exchange x) {
        for (Vring v : vrings) {
            v.started = false;
            v.enabled = false;
        }
        reconcileAll(x, false);
        x.afterAcks(() -> {
            for (int i = 0; i < vrings.length; i++) {
                vrings[i].closeFds();
                vrings[i] = new Vring();
            }
        });
    }

    private boolean enabled(Vring v) {
        // Without PROTOCOL_FEATURES a ring is enabled from the start (vhost-user spec, "Ring states").
        return v.enabled || !negotiation.has(VirtioFeatures.PROTOCOL_FEATURES);
    }

    /** {@link #reconcile} of every queue. */
    void reconcileAll(Exchange x, boolean reconfigure) {
        for (int i = 0; i < vrings.length; i++) {
            reconcile(x, i, reconfigure);
        }
    }

    /**
     * Brings queue {@code i} to what its state asks for: detached, attached, or (when
     * {@code reconfigure}) detached and attached again with the new settings.
     */
    void reconcile(Exchange x, int i, boolean reconfigure) {
        Vring v = vrings[i];
        boolean want = !closed && !held && v.started && enabled(v) && v.address != null && v.num > 0 && regions.hasMemory();
        if (v.running && (!want || reconfigure)) {
            v.running = false;
            x.expectAck();
            backend.detach(i, base -> {
                if (base >= 0) {
                    v.base = base;
                }
                x.ack();
            });
        }
        if (want && !v.running) {
            QueueConfig config = queueConfig(i, v);
            if (config != null) {
                v.running = true;
                v.baseSet = false;
                x.expectAck();
                backend.attach(i, config, x::ack);
            }
        }
    }

    private QueueConfig queueConfig(int i, Vring v) {
        GuestMemory mem = regions.guestMemory();
        VringAddress a = v.address;
        boolean packed = negotiation.has(VirtioFeatures.RING_PACKED);
        // Split: descriptor table, avail ring, used ring. Packed: descriptor ring, then the driver's and
        // the device's event suppression structures (4 bytes each, 4-aligned).
        MemorySegment desc = mem.translateHva(a.descHva(), 16L * v.num);
        MemorySegment avail = mem.translateHva(a.availHva(), packed ? 4 : 6 + 2L * v.num);
        MemorySegment used = mem.translateHva(a.usedHva(), packed ? 4 : 6 + 8L * v.num);
        if (desc == null || avail == null || used == null) {
            return refuse(i, v, String.format("rings are not in guest memory (desc 0x%x avail 0x%x used 0x%x)",
                    a.descHva(), a.availHva(), a.usedHva()));
        }
        // Where they land in our mapping, which the ring reads with aligned (atomic) accesses: a
        // region whose address and mmap offset disagree modulo 16 misaligns rings whose addresses
        // the frontend aligned (QEMU's never do).
        if ((desc.address() & 15) != 0 || (avail.address() & (packed ? 3 : 1)) != 0 || (used.address() & 3) != 0) {
            return refuse(i, v, String.format("rings at 0x%x, 0x%x, 0x%x land %d, %d and %d bytes past 16-byte alignment"
                    + " in our mapping (a region whose address and mmap offset disagree); 16, %d and 4 needed",
                    a.descHva(), a.availHva(), a.usedHva(), desc.address() & 15, avail.address() & 15, used.address() & 15,
                    packed ? 4 : 2));
        }
        long base = v.baseSet ? v.base : QueueConfig.KEEP_BASE;
        if (base != QueueConfig.KEEP_BASE) {
            String problem = QueuePosition.baseProblem(v.num, base, packed);
            if (problem != null) {
                return refuse(i, v, problem);
            }
        }
        int options = (packed ? VirtQueue.PACKED : 0)
                | (negotiation.has(VirtioFeatures.RING_EVENT_IDX) ? VirtQueue.EVENT_IDX : 0)
                | (negotiation.has(VirtioFeatures.RING_INDIRECT_DESC) ? VirtQueue.INDIRECT : 0)
                | (negotiation.has(VirtioFeatures.IN_ORDER) ? VirtQueue.IN_ORDER : 0);
        DirtyLog log = negotiation.has(VirtioFeatures.LOG_ALL) ? regions.dirtyLog() : null;
        long deviceAreaGpa = a.logged() ? a.logGpa() : mem.hvaToGpa(a.usedHva());
        return new QueueConfig(i, v.num, desc, avail, used, mem, base, options,
                v.kick == null ? -1 : v.kick.get(), v.call == null ? -1 : v.call.get(),
                v.err == null ? -1 : v.err.get(), regions.inflightFor(i, v.num, packed), log,
                mem.hvaToGpa(a.descHva()), deviceAreaGpa);
    }

    /** A queue that cannot start: logged, its err eventfd written, and it stays stopped. */
    private QueueConfig refuse(int i, Vring v, String why) {
        LOG.error("{}: queue {}: {}; not starting it", name, i, why);
        if (v.err != null) {
            LibC.eventfdSignal(v.err.get());
        }
        return null;
    }

    /**
     * Holds every queue stopped (each running one detaches, finishing what it has in flight, and
     * keeps its position as its base) until {@link #release}: what a live upgrade pauses and
     * replays under.
     */
    void hold(Exchange x) {
        held = true;
        reconcileAll(x, false);
    }

    /** Lets every queue run again that its state asks to run. */
    void release(Exchange x) {
        held = false;
        reconcileAll(x, false);
    }

    /**
     * The messages that rebuild every vring's state in a successor process, with duplicates of the
     * fds: size, addresses, base (where the queue stopped), call and err fds, the kick fd if the
     * ring was started, and enable. Only while {@link #hold held}: the bases are final then.
     */
    void handoverMessages(java.util.List<Message> out) throws io.jvhost.core.sys.NativeException {
        for (int i = 0; i < vrings.length; i++) {
            Vring v = vrings[i];
            if (v.num > 0) {
                out.add(message(MessageType.SET_VRING_NUM, VringState.encode(i, v.num)));
            }
            if (v.address != null) {
                out.add(message(MessageType.SET_VRING_ADDR, v.address.encode()));
            }
            out.add(message(MessageType.SET_VRING_BASE, VringState.encode(i, (int) v.base)));
            if (v.call != null) {
                out.add(fdMessage(MessageType.SET_VRING_CALL, i, v.call));
            }
            if (v.err != null) {
                out.add(fdMessage(MessageType.SET_VRING_ERR, i, v.err));
            }
            if (v.started) {
                out.add(fdMessage(MessageType.SET_VRING_KICK, i, v.kick));
            }
            if (v.enabled) {
                out.add(message(MessageType.SET_VRING_ENABLE, VringState.encode(i, 1)));
            }
        }
    }

    private static Message message(int request, byte[] payload) {
        return new Message(request, io.jvhost.core.protocol.Header.VERSION, payload, new Fd[0]);
    }

    /** SET_VRING_KICK/CALL/ERR with a duplicate of {@code fd}, or NOFD when there is none (a polled ring). */
    private static Message fdMessage(int request, int index, Fd fd) throws io.jvhost.core.sys.NativeException {
        byte[] payload = new VringFd(index, fd == null).encode();
        return new Message(request, io.jvhost.core.protocol.Header.VERSION, payload, fd == null ? new Fd[0] : new Fd[] {fd.dup()});
    }

    /**
     * Stops every running queue for good, each detach expected on {@code barrier}; call
     * {@link #closeFds()} once it has fired.
     */
    void close(Barrier barrier) {
        closed = true;
        for (int i = 0; i < vrings.length; i++) {
            Vring v = vrings[i];
            if (v.running) {
                v.running = false;
                barrier.expect();
                backend.detach(i, last -> barrier.arrive());
            }
        }
    }

    void closeFds() {
        for (Vring v : vrings) {
            v.closeFds();
        }
    }
}
