package io.jvhost.net;

import java.lang.foreign.MemorySegment;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.LongSupplier;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An in-process learning switch between guest NICs: each NIC's port is {@link #newPort()}; an
 * {@link Uplink} (such as a VXLAN tunnel) plugs into {@link #newUplinkPort}.
 * Unicast goes to the port that last sent from the destination MAC, if it was seen within the
 * ageing time; broadcast, multicast and unknown destinations flood to every other port. Frames
 * cross poller threads through each destination's lock-free injection queue.
 *
 * <p>Offloads cross the switch unchanged (VM to VM never segments): a guest's TCP segment of up to
 * 64 KiB reaches a guest that accepted such segments whole; for one that did not, the sending
 * port's poller cuts it into MTU-sized frames (and completes checksums) first.
 *
 * <p>The MAC table is open addressing over atomic arrays: lookups and learning never lock or
 * allocate, from any number of pollers at once.
 */
public final class L2Switch {
    private static final Logger LOG = LoggerFactory.getLogger(L2Switch.class);
    private static final int TABLE_SIZE = 4096;

    private final CopyOnWriteArrayList<SwitchPort> ports = new CopyOnWriteArrayList<>();
    /** MAC to port id. */
    private final MacTable table;

    /** @param clock milliseconds; injected so tests can age entries without waiting */
    public L2Switch(long ageingMillis, LongSupplier clock) {
        this.table = new MacTable(TABLE_SIZE, ageingMillis, clock);
    }

    public L2Switch() {
        this(300_000, System::currentTimeMillis);
    }

    /** A new port; connect a NetDevice to it. */
    public SwitchPort newPort() {
        SwitchPort p = new SwitchPort(this, ports.size(), null);
        ports.add(p);
        return p;
    }

    /**
     * A new port for {@code uplink}, which is no guest NIC (a tunnel such as {@link VxlanPort}):
     * the switch hands it frames through {@link Uplink#send}, and it hands frames in with
     * {@link SwitchPort#forwardFromUplink}.
     */
    public SwitchPort newUplinkPort(Uplink uplink) {
        SwitchPort p = new SwitchPort(this, ports.size(), uplink);
        ports.add(p);
        return p;
    }

    /** A switch port that is not a guest NIC: a tunnel or another network. */
    public interface Uplink {
        /**
         * A frame for the uplink from {@code source}: {@code [offset, offset + length)} of the native
         * {@code memory}. On the thread forwarding it (a guest's poller), possibly on several at once;
         * must not block; the bytes are valid during the call only, so copy what you keep.
         */
        void send(long source, MemorySegment memory, long offset, long length);

        /**
         * Whether the uplink takes frames as a guest's GSO/checksum-offload frames come; false: plain
         * Ethernet frames of at most the MTU only, which the switch makes them into first.
         */
        default boolean acceptsOffloadFrames() {
            return false;
        }

        /** One line of counters. Any thread. */
        default String describe() {
            return getClass().getSimpleName();
        }
    }

    public int portCount() {
        return ports.size();
    }

    public SwitchPort port(int id) {
        return ports.get(id);
    }

    /** Records that {@code mac} lives behind {@code port}. */
    void learn(long mac, int port) {
        int old = table.learn(mac, port);
        if (old >= 0 && old != port) {
            LOG.info("MAC {} moved from port {} to port {}", Frames.macString(mac), old, port);
        }
    }

    /** The port behind {@code mac}, or -1 when unknown or aged out. */
    public int lookup(long mac) {
        return table.lookup(mac);
    }

    /**
     * Forwards a frame, {@code [offset, offset + length)} of {@code memory}, that arrived on port
     * {@code from}. Any poller thread.
     */
    void forward(SwitchPort from, int pair, NetHeader header, MemorySegment memory, long offset, long length) {
        long src = Frames.source(memory, offset);
        learn(src, from.id);
        long dst = Frames.destination(memory, offset);
        int to = Frames.isGroup(dst) ? -1 : lookup(dst);
        if (to >= 0) {
            if (to != from.id) {
                ports.get(to).receive(from, pair, src, header, memory, offset, length);
            }
            return;
        }
        for (SwitchPort p : ports) { // CopyOnWriteArrayList iterates a snapshot array
            if (p.id() != from.id) {
                p.receive(from, pair, src, header, memory, offset, length);
            }
        }
    }

    /** A switch port: where one guest NIC, or one {@link Uplink}, plugs in. */
    public static final class SwitchPort implements NetPort {
        private final L2Switch sw;
        private final int id;
        private final Uplink uplink;
        private volatile GuestNic nic;
        long forwarded;
        /** Per queue pair of this port's NIC: cuts its guest's segments for NICs that take none (that pair's poller). */
        private Segmenter[] segmenters = new Segmenter[0];
        private final NetHeader plain = new NetHeader();
        /** Per pair: where a segment goes, and to whom (set just before each cut). */
        private Forward[] forwards = new Forward[0];

        /** A segment of this port's guest's frame on its way to another port's guest, or to an uplink. */
        private static final class Forward implements Segmenter.Sink {
            GuestNic to;
            int toPair;
            Uplink toUplink;
            long source;

            @Override
            public void accept(MemorySegment frame, long length) {
                if (toUplink != null) {
                    toUplink.send(source, frame, 0, length);
                } else {
                    to.inject(toPair, frame, 0, length);
                }
            }
        }

        SwitchPort(L2Switch sw, int id, Uplink uplink) {
            this.sw = sw;
            this.id = id;
            this.uplink = uplink;
        }

        public int id() {
            return id;
        }

        @Override
        public void attach(GuestNic nic) {
            if (uplink != null) {
                throw new IllegalStateException("switch port " + id + " belongs to an uplink, not a NIC");
            }
            segmenters = new Segmenter[nic.pairs()]; // created by each pair's poller when first needed
            forwards = new Forward[nic.pairs()];
            for (int i = 0; i < forwards.length; i++) {
                forwards[i] = new Forward();
            }
            this.nic = nic;
        }

        /** Guests' offloads pass through: the switch completes them for whoever cannot take them. */
        @Override
        public long offloads() {
            return NetHeader.HOST_OFFLOADS | NetHeader.GUEST_OFFLOADS;
        }

        /**
         * A frame that arrived on this port's uplink, for the switch to forward (the uplink's own
         * thread; any thread may call it). The bytes are read during the call only. Uplink frames
         * are plain: they never need cutting on their way to a guest.
         */
        public void forwardFromUplink(MemorySegment memory, long offset, long length) {
            sw.forward(this, 0, plain, memory, offset, length);
        }

        @Override
        public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length) {
            sw.forward(this, pair, plain, memory, offset, length);
        }

        @Override
        public void onFrame(GuestNic nic, int pair, NetHeader header, MemorySegment memory, long offset, long length) {
            sw.forward(this, pair, header, memory, offset, length);
        }

        /**
         * A frame from {@code source} for this port's guest (or uplink), on the poller of
         * {@code from}'s pair {@code fromPair}. Its offloads go along if the guest accepted them,
         * else are completed here, on the sender's poller: a 64 KiB segment never waits in this
         * guest's queue whole; an uplink that takes plain frames gets the segments.
         */
        void receive(SwitchPort from, int fromPair, long source, NetHeader header, MemorySegment memory, long offset,
                     long length) {
            if (uplink != null) {
                if (header.isPlain() || uplink.acceptsOffloadFrames()) {
                    uplink.send(source, memory, offset, length);
                } else {
                    Forward f = from.forwards[fromPair];
                    f.toUplink = uplink;
                    f.source = source;
                    segment(from, fromPair, header, memory, offset, length, from.nic.maxFrame(), f);
                }
                return;
            }
            GuestNic n = nic;
            if (n == null) {
                return;
            }
            // Spread over the queue pairs the guest uses by source MAC, so one flow stays in
            // order. A guest without MQ, or with fewer pairs enabled, never reads the others.
            int active = n.receivingPairs();
            int pair = active > 1 ? (int) (source % active) : 0;
            if (header.isPlain() || header.acceptedBy(n.acceptedFeatures())) {
                n.inject(pair, header, memory, offset, length);
                return;
            }
            Forward f = from.forwards[fromPair];
            f.toUplink = null;
            f.to = n;
            f.toPair = pair;
            if (!segment(from, fromPair, header, memory, offset, length, n.maxFrame(), f)) {
                n.counters(pair).addRxDropped(1);
            }
        }

        /** Completes a guest frame's offloads on the sender's poller; false when it cannot be (counted there). */
        private static boolean segment(SwitchPort from, int fromPair, NetHeader header, MemorySegment memory, long offset,
                                       long length, int maxFrame, Forward to) {
            Segmenter s = from.segmenters[fromPair];
            if (s == null) {
                s = from.segmenters[fromPair] = new Segmenter(NetDevice.JUMBO_FRAME);
            }
            return s.resolve(header, memory, offset, length, maxFrame, to) == Segmenter.DONE;
        }

        @Override
        public String describe() {
            return "switch port " + id + ": " + (uplink != null ? uplink.describe() : BenchPorts.total(nic));
        }

        /** Unplugs the NIC: frames for this port are dropped from now on (the port keeps its id). */
        @Override
        public void close() {
            nic = null;
        }
    }
}
