package io.jvhost.net;

import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.metrics.MetricSink;
import io.jvhost.core.ring.BufferBurst;
import io.jvhost.core.ring.ChainCursor;
import io.jvhost.core.ring.DescriptorChain;
import io.jvhost.core.ring.VirtQueue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import io.jvhost.core.device.VirtioFeatures;

import static io.jvhost.core.device.VirtioFeatures.*;

/**
 * virtio-net (virtio 1.2 §5.1) data queues: receive queue 2i and transmit queue 2i+1 for each
 * queue pair i; QEMU 7.2 keeps the control queue. Frames go to and come from a {@link NetPort}.
 * Both queues of a pair run on the same poller, so a port can answer a frame in place.
 */
public final class NetDevice implements io.jvhost.core.device.VirtioDevice {
    private static final Logger LOG = LoggerFactory.getLogger(NetDevice.class);
    public static final int DEVICE_TYPE = 1;
    static final int HEADER_V1 = 12, HEADER_LEGACY = 10, NUM_BUFFERS_OFFSET = 10;
    static final int ETHERNET_HEADER = 14, VLAN_TAG = 4;
    public static final int DEFAULT_MTU = 1500;
    static final int JUMBO_FRAME = 9216 + ETHERNET_HEADER + VLAN_TAG;

    static final String PACKETS = "jvhost_queue_packets", PACKET_BYTES = "jvhost_queue_packet_bytes";
    static final String PACKETS_HELP = "Ethernet frames the NIC received for the guest (receive queues) or sent"
            + " from it (transmit queues).";
    static final String PACKET_BYTES_HELP = "Bytes of those frames, virtio-net headers not included.";

    private final NetPort port;
    private final int pairCount;
    private final long mac;
    private final GuestNic nic;
    /** The offload features offered: what the port handles, none with offloads off. */
    private final long offloads;
    private volatile int mtu;
    private volatile long acked;

    /**
     * @param mac the guest's MAC (6 bytes in the low 48 bits, first byte highest), for config and RARP
     */
    public NetDevice(NetPort port, int pairs, long mac, int mtu) {
        this(port, pairs, mac, mtu, true);
    }

    /**
     * @param mac      the guest's MAC (6 bytes in the low 48 bits, first byte highest), for config and RARP
     * @param offloads whether to offer the guest the checksum and segmentation offloads the port
     *                 handles ({@link NetPort#offloads()}); off, every frame is plain both ways
     */
    public NetDevice(NetPort port, int pairs, long mac, int mtu, boolean offloads) {
        if (pairs < 1 || pairs > 64) {
            throw new IllegalArgumentException("queue pairs must be 1..64: " + pairs);
        }
        if (mtu < 68 || mtu > 65535 - ETHERNET_HEADER - VLAN_TAG) {
            throw new IllegalArgumentException("MTU out of range: " + mtu);
        }
        this.port = port;
        this.pairCount = pairs;
        this.mac = mac;
        this.mtu = mtu;
        this.offloads = offloads ? port.offloads() & (NetHeader.HOST_OFFLOADS | NetHeader.GUEST_OFFLOADS) : 0;
        // Without offloads injected frames are MTU-sized: room for jumbo frames (9216) in 1024
        // buffers. With them a frame may be a 64 KiB segment: fewer buffers (16 MiB per NIC).
        this.nic = this.offloads == 0 ? new GuestNic(this, pairs, Math.max(maxFrame(), JUMBO_FRAME), 1024)
                : new GuestNic(this, pairs, Math.max(NetHeader.MAX_GSO_FRAME, JUMBO_FRAME), 256);
        port.attach(nic);
    }

    public GuestNic nic() {
        return nic;
    }

    public NetPort port() {
        return port;
    }

    long mac() {
        return mac;
    }

    int maxFrame() {
        return mtu + ETHERNET_HEADER + VLAN_TAG;
    }

    boolean mergeable() {
        return VirtioFeatures.has(acked, NET_MRG_RXBUF);
    }

    /** The features the driver accepted (0 before it did, and after a reset). */
    long acked() {
        return acked;
    }

    /** Whether the guest may send headers that ask for offloads: it accepted checksum offload. */
    boolean hostOffloads() {
        return VirtioFeatures.has(acked, NET_CSUM);
    }

    int headerLength() {
        return (acked & (bit(VERSION_1) | bit(NET_MRG_RXBUF))) != 0 ? HEADER_V1 : HEADER_LEGACY;
    }

    @Override
    public int deviceType() {
        return DEVICE_TYPE;
    }

    @Override
    public int queueCount() {
        return 2 * pairCount;
    }

    @Override
    public int maxQueueSize() {
        return 1024;
    }

    @Override
    public long features() {
        // Offloads only as far as the port handles them (the control queue stays QEMU's, so the
        // guest cannot change them later: no CTRL_GUEST_OFFLOADS).
        long f = bit(NET_MRG_RXBUF) | bit(NET_MTU) | bit(NET_MAC) | bit(NET_STATUS) | bit(NET_GUEST_ANNOUNCE) | offloads;
        return pairCount > 1 ? f | bit(NET_MQ) : f;
    }

    /** NET_SET_MTU and SEND_RARP are ours to handle. */
    @Override
    public long protocolFeatures() {
        return ProtocolFeatures.bit(ProtocolFeatures.MTU) | ProtocolFeatures.bit(ProtocolFeatures.RARP);
    }

    @Override
    public void featuresAcked(long features) {
        acked = features;
        port.offloadsAccepted(features & offloads);
    }

    @Override
    public byte[] config() {
        ByteBuffer b = ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < 6; i++) {
            b.put(i, (byte) (mac >>> (40 - 8 * i)));
        }
        b.putShort(6, (short) 1); // VIRTIO_NET_S_LINK_UP
        b.putShort(8, (short) pairCount);
        b.putShort(10, (short) mtu);
        return b.array();
    }

    @Override
    public boolean setMtu(int newMtu) {
        if (newMtu < 68 || newMtu > 65535 - ETHERNET_HEADER - VLAN_TAG) {
            return false;
        }
        mtu = newMtu;
        LOG.info("MTU set to {}", newMtu);
        return true;
    }

    /**
     * Announces the guest with a RARP frame, sent from queue pair 0 as if the guest had sent it.
     * Control thread: the frame goes to pair 0's poller, which hands it to the port there
     * ({@link NetPort}'s threading contract).
     *
     * @param payloadMac the MAC as SEND_RARP carries it: the first 6 payload bytes, which the
     *                   framework reads as a little-endian u64 (so the MAC's first byte is lowest)
     */
    @Override
    public boolean sendRarp(long payloadMac) {
        long guestMac = Long.reverseBytes(payloadMac) >>> 16; // first byte highest, as everywhere here
        if (!nic.announce(0, Frames.rarp(guestMac))) {
            LOG.warn("RARP for {} not sent: no packet buffer free", Frames.macString(guestMac));
            return false;
        }
        LOG.info("announcing {} with RARP after migration", Frames.macString(guestMac));
        return true;
    }

    @Override
    public void reset() {
        acked = 0;
        port.offloadsAccepted(0);
    }

    /** Each queue pair on its own poller. */
    @Override
    public int[][] queueSets() {
        int[][] sets = new int[pairCount][];
        for (int i = 0; i < pairCount; i++) {
            sets[i] = new int[] {2 * i, 2 * i + 1};
        }
        return sets;
    }

    @Override
    public QueueHandler handler(int index) {
        GuestNic.Pair pair = nic.pair(index / 2);
        return index % 2 == 0 ? new RxHandler(pair) : new TxHandler(pair);
    }

    /** One queue of a queue pair; both report their traffic under the same metric names. */
    private abstract static class PairHandler implements QueueHandler {
        final GuestNic.Pair pair;

        PairHandler(GuestNic.Pair pair) {
            this.pair = pair;
        }

        static void traffic(MetricSink sink, long frames, long bytes) {
            sink.counter(PACKETS, PACKETS_HELP, frames);
            sink.counter(PACKET_BYTES, PACKET_BYTES_HELP, bytes);
        }
    }

    /** Receive queue: frames injected from other threads, then whatever the port produces. */
    private final class RxHandler extends PairHandler {
        RxHandler(GuestNic.Pair pair) {
            super(pair);
        }

        @Override
        public void started(VirtQueue q) {
            q.completesInOrder(true); // each frame's chains, in the order taken (GuestNic)
            pair.rx = q;
        }

        @Override
        public void stopped(VirtQueue q) {
            pair.rx = null;
        }

        @Override
        public int wakeupFd() {
            return port.wakeupFd(pair.index);
        }

        /** The guest's receive buffers wait for frames: no work until one comes (the port's fd, an injection). */
        @Override
        public boolean takesBuffersOnDemand() {
            return true;
        }

        @Override
        public void metrics(MetricSink sink) {
            NetCounters.Snapshot c = pair.counters.snapshot();
            traffic(sink, c.rxFrames(), c.rxBytes());
            sink.drops("rx_no_buffer", c.rxDropped());
        }

        @Override
        public int process(VirtQueue q, int budget) {
            int done = nic.drainAnnounced(pair, port);
            done += nic.drainInjected(pair);
            done += port.poll(nic, pair.index);
            q.publish();
            return done;
        }
    }

    /** Transmit queue: each chain read once, its frame handed to the port, completed with 0. */
    private final class TxHandler extends PairHandler {
        private final MemorySegment scratch = java.lang.foreign.Arena.ofAuto().allocate(65536 + 64, 64);
        private final ChainCursor cursor = new ChainCursor();
        private final BufferBurst burst = new BufferBurst();
        /** What {@link #touch} read, only so that its loads are kept. */
        private int touched;
        private final NetHeader header = new NetHeader();
        private final MemorySegment headerBytes = java.lang.foreign.Arena.ofAuto().allocate(NetHeader.SIZE, 8);
        // Where frame() found the current frame.
        private MemorySegment frameMemory;
        private long frameOffset;

        TxHandler(GuestNic.Pair pair) {
            super(pair);
        }

        @Override
        public void started(VirtQueue q) {
            q.completesInOrder(true); // each chain right after it is taken (process)
            pair.tx = q;
        }

        @Override
        public void metrics(MetricSink sink) {
            NetCounters.Snapshot c = pair.counters.snapshot();
            traffic(sink, c.txFrames(), c.txBytes());
            sink.drops("tx_bad_length", c.txDropped());
            sink.drops("tx_bad_header", c.txBadHeader());
        }

        /** Sends what the guest queued before the frontend stopped the ring, as a NIC would. */
        @Override
        public void stopped(VirtQueue q) {
            process(q, q.size());
            pair.tx = null;
        }

        @Override
        public int process(VirtQueue q, int budget) {
            int done = nic.drainAnnounced(pair, port); // for a pair whose receive queue does not run
            int hdr = headerLength();
            boolean offloaded = hostOffloads();
            header.clear();
            boolean bursts = !offloaded;
            pair.answering = true; // what the port delivers now answers these frames (GuestNic.ANSWER_GROUP)
            try {
                while (done < budget) {
                    // Frames each in one buffer with its header, as drivers send them: a burst at a
                    // time. With offloads each header is read and checked: the chain-by-chain way.
                    int n = bursts ? burst.takeReadable(q, budget - done, hdr) : 0;
                    if (n > 0) {
                        sendBurst(n, hdr);
                        done += n;
                        port.flush(nic, pair.index); // answers to this burst go now, while the next is written
                        continue;
                    }
                    DescriptorChain c = q.next();
                    if (c == null) {
                        break;
                    }
                    // A frame in several buffers (a Linux guest puts the header apart when it cannot push
                    // it in front): the next ones likely are too, so no burst is tried until one is not.
                    bursts = !offloaded && c.count() == 1;
                    done++;
                    long length = c.readableLength() - hdr;
                    if (offloaded && length >= ETHERNET_HEADER && !readHeader(c, length)) {
                        pair.counters.txBadHeader++;
                    } else if (counted(length, header.isGso() ? NetHeader.MAX_GSO_FRAME : maxFrame())
                            && frame(c, hdr, length)) {
                        port.onFrame(nic, pair.index, header, frameMemory, frameOffset, length);
                    }
                    q.complete(c, 0);
                }
                port.flush(nic, pair.index);
            } finally {
                pair.answering = false;
            }
            q.publish();
            VirtQueue rx = pair.rx;
            if (rx != null) {
                rx.publish(); // the port may have answered into the receive queue
            }
            return done;
        }

        /** Counts a frame of {@code length} bytes as sent, or as dropped when shorter than an Ethernet header or longer than {@code max}; whether it goes on. */
        private boolean counted(long length, long max) {
            if (length < ETHERNET_HEADER || length > max) {
                pair.counters.txDropped++;
                return false;
            }
            pair.counters.txFrames++;
            pair.counters.txBytes += length;
            return true;
        }

        /** Hands the frames of the {@code n} chains just taken to the port, then uses them all. */
        private void sendBurst(int n, int hdr) {
            touch(n, hdr);
            int max = maxFrame();
            for (int i = 0; i < n; i++) {
                long length = burst.length(i) - hdr;
                if (counted(length, max)) {
                    port.onFrame(nic, pair.index, header, burst.memory(i), burst.offset(i) + hdr, length);
                }
            }
            burst.complete(n);
        }

        /**
         * Reads the first byte of each of the burst's {@code n} frames (where every port starts
         * reading) before the port sees any: when the driver's CPU is far from the poller's, their
         * cache lines are then fetched together instead of one frame's at a time (loopback on packed
         * rings far apart: +20-40 %, perf/RESULTS.md 2026-12-07). The sum goes to a field so the JIT
         * keeps the loads.
         */
        private void touch(int n, int hdr) {
            int sum = 0;
            for (int i = 0; i < n; i++) {
                if (burst.length(i) > hdr) { // else no frame: only the header, which may end its region
                    sum += burst.memory(i).get(ValueLayout.JAVA_BYTE, burst.offset(i) + hdr);
                }
            }
            touched = sum;
        }

        /**
         * Reads the chain's offload header into {@link #header}; false (logged now and then) when it
         * asks for what was not negotiated or points outside the frame.
         */
        private boolean readHeader(DescriptorChain c, long length) {
            c.read(0, headerBytes, 0, NetHeader.SIZE);
            header.read(headerBytes, 0);
            String error = header.transmitError(length, acked);
            if (error == null) {
                return true;
            }
            long n = pair.counters.txBadHeader + 1;
            if (Long.bitCount(n) == 1) { // the 1st, 2nd, 4th, 8th... of a pair: seen, never a flood
                LOG.warn("queue pair {}: guest frame dropped, bad virtio-net header ({}): {} ({} so far)", pair.index,
                        header, error, n);
            }
            header.clear();
            return false;
        }

        /**
         * Sets {@link #frameMemory} and {@link #frameOffset} to where the frame lies in one piece: in
         * guest memory when it sits in one buffer, else in a copy in {@link #scratch}; or, for a frame
         * in several buffers, offers the port the pieces as they lie first and returns false when it
         * took them ({@link NetPort#onFramePieces}: a TAP writes them with one writev). No slices.
         */
        private boolean frame(DescriptorChain c, int hdr, long length) {
            ChainCursor b = cursor.readable(c, hdr);
            if (b.next(length) && b.length() == length) {
                frameMemory = b.memory();
                frameOffset = b.offset();
                return true;
            }
            if (port.onFramePieces(nic, pair.index, header, cursor.readable(c, hdr), length)) {
                return false;
            }
            c.read(hdr, scratch, 0, length);
            frameMemory = scratch;
            frameOffset = 0;
            return true;
        }
    }
}
