package io.jvhost.testkit.frontend;

import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.testkit.Payloads.NONE;
import static io.jvhost.testkit.Payloads.u64;
import static io.jvhost.testkit.Payloads.vringState;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.memory.MemoryMap;
import io.jvhost.testkit.frontend.QemuScript.Acks;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.runtime.FeaturePolicy;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.Payloads.Region;
import io.jvhost.testkit.Traffic;
import io.jvhost.core.device.VirtioFeatures;

import java.util.Arrays;

/**
 * The message sequences QEMU 7.2 sends to vhost-user-net and vhost-user-blk backends, written as
 * {@link QemuScript}s from /work/shared/reference/qemu-7.2-vhost-user.md §4.1 and §4.2, with the
 * guest's traffic in between.
 */
public final class QemuSequences {
    /** Protocol features QEMU 7.2 knows: bits 0 to 16. */
    public static final long QEMU_72_PROTOCOL_FEATURES = 0x1FFFFL;
    public static final int ACKNOWLEDGE = 1, DRIVER = 2, DRIVER_OK = 4, FEATURES_OK = 8;
    public static final int RING_SIZE = 128;
    /**
     * Where a virtio-blk driver writes {@code wce}: {@code writeback} of {@code struct
     * virtio_blk_config} (virtio 1.2 §5.2.4), after capacity (u64 @0), size_max (@8), seg_max
     * (@12), geometry (@16), blk_size (u32 @20) and topology (8 bytes @24).
     */
    public static final int BLK_WCE_OFFSET = 32;

    private QemuSequences() {
    }

    /**
     * The guest side of one VM: RAM in two regions, the driver's rings (split, or packed as with
     * {@code packed=on}), and the eventfds and back-end channel QEMU creates. {@link #newRings()} is
     * a guest driver re-initialising its queues after a reset.
     */
    public static final class Guest implements AutoCloseable {
        final GuestRam ram;
        final int queues;
        final DriverQueue.Layout layout;
        final Fd[] masked;
        final Fd[] err;
        final Fd[] channel;
        final int[] base;
        private final DriverQueue[] rings;
        int generation;

        public Guest(int queues) throws NativeException {
            this(queues, DriverQueue.Layout.SPLIT);
        }

        /** A guest whose driver uses rings of {@code layout}: packed ones when the device has {@code packed=on}. */
        public Guest(int queues, DriverQueue.Layout layout) throws NativeException {
            this.ram = new GuestRam(2 << 20, 1 << 20);
            this.queues = queues;
            this.layout = layout;
            this.masked = new Fd[queues];
            this.err = new Fd[queues];
            this.rings = new DriverQueue[queues];
            this.base = new int[queues];
            for (int v = 0; v < queues; v++) {
                masked[v] = EventFd.create();
                err[v] = EventFd.create();
                rings[v] = new DriverQueue(ram, v, RING_SIZE, layout);
                base[v] = rings[v].base();
            }
            this.channel = UnixSockets.pair();
        }

        DriverQueue ring(int v) {
            return rings[v];
        }

        void newRings() throws NativeException {
            generation++;
            for (int v = 0; v < queues; v++) {
                rings[v].close();
                rings[v] = new DriverQueue(ram, v, RING_SIZE, layout);
                base[v] = rings[v].base(); // QEMU's virtio reset: 0, or packed positions 0 with wrap counters 1
            }
        }

        /**
         * The features QEMU acks for this guest: what the backend offered, RING_PACKED only with
         * packed rings, never IN_ORDER (QEMU 7.2's vhost-user devices do not pass it to the guest).
         */
        long acked(long offered) {
            long packed = VirtioFeatures.bit(VirtioFeatures.RING_PACKED);
            return (offered & ~Frontend.RING_FEATURES) | (layout == DriverQueue.Layout.PACKED ? offered & packed : 0);
        }

        /** Three echo requests on every queue. */
        void traffic() {
            for (int v = 0; v < queues; v++) {
                Traffic.echo(ring(v), 3, 100 * generation + 10 * v);
            }
        }

        @Override
        public void close() {
            for (int v = 0; v < queues; v++) {
                rings[v].close();
                masked[v].close();
                err[v].close();
            }
            Fd.closeAll(channel);
            ram.close();
        }
    }

    private static byte[] addr(DriverQueue q) {
        return Payloads.vringAddr(q.index(), 0, q.descHva(), q.usedHva(), q.availHva(), 0);
    }

    private static void enable(QemuScript s, int v, boolean on) {
        s.send("SET_VRING_ENABLE(" + v + ", " + (on ? 1 : 0) + ")", SET_VRING_ENABLE, vringState(v, on ? 1 : 0));
    }

    /** Connect-time messages for one vhost_dev covering queues {@code first..first+count-1} (§4.1 A, §4.2 A 1-3). */
    private static void init(QemuScript s, Guest g, long[] features, boolean firstDev, int first, int count,
                             long protocolFeatureMask) {
        s.get("GET_FEATURES", GET_FEATURES, r -> features[0] = r.u64());
        s.get("GET_PROTOCOL_FEATURES", GET_PROTOCOL_FEATURES, r -> s.offeredProtocolFeatures = r.u64());
        s.setProtocolFeatures(() -> QEMU_72_PROTOCOL_FEATURES & protocolFeatureMask);
        if (firstDev) {
            s.get("GET_QUEUE_NUM", GET_QUEUE_NUM, r -> assertEquals(g.queues, r.u64()));
        }
        if ((FeaturePolicy.PROTOCOL_FEATURES & protocolFeatureMask & ProtocolFeatures.bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS)) != 0) {
            s.get("GET_MAX_MEM_SLOTS", GET_MAX_MEM_SLOTS, r -> assertEquals(MemoryMap.MAX_SLOTS, r.u64()));
        }
        if (firstDev) {
            s.acked("SET_BACKEND_REQ_FD", SET_BACKEND_REQ_FD, () -> NONE, () -> g.channel[1]);
            s.send("SET_OWNER", SET_OWNER, NONE);
        }
        s.get("GET_FEATURES", GET_FEATURES, r -> assertEquals(features[0], r.u64()));
        for (int v = first; v < first + count; v++) {
            int vq = v;
            s.send("SET_VRING_CALL(" + v + ") masked notifier", SET_VRING_CALL, () -> u64(vq), () -> g.masked[vq]);
            s.send("SET_VRING_ERR(" + v + ")", SET_VRING_ERR, () -> u64(vq), () -> g.err[vq]);
        }
    }

    private static void addRegions(QemuScript s, Guest g) {
        for (int r = 0; r < g.ram.regionCount(); r++) {
            int region = r;
            s.acked("ADD_MEM_REG(" + r + ")", ADD_MEM_REG, () -> Payloads.memReg(Region.of(g.ram, region)), g.ram::fd);
        }
    }

    private static void setMemTable(QemuScript s, Guest g) {
        Region[] regions = new Region[g.ram.regionCount()];
        for (int r = 0; r < regions.length; r++) {
            regions[r] = Region.of(g.ram, r);
        }
        s.ackedWithFds("SET_MEM_TABLE", SET_MEM_TABLE, () -> Payloads.memTable(regions), () -> {
            Fd[] fds = new Fd[regions.length];
            Arrays.fill(fds, g.ram.fd());
            return fds;
        });
    }

    /** SET_VRING_NUM, BASE, ADDR, KICK for {@code v} (§4.1 C d, §4.2 B 8). */
    private static void ring(QemuScript s, Guest g, int v) {
        s.send("SET_VRING_NUM(" + v + ")", SET_VRING_NUM, () -> vringState(v, RING_SIZE), null);
        s.send("SET_VRING_BASE(" + v + ")", SET_VRING_BASE, () -> vringState(v, g.base[v]), null);
        s.send("SET_VRING_ADDR(" + v + ")", SET_VRING_ADDR, () -> addr(g.ring(v)), null);
        s.send("SET_VRING_KICK(" + v + ")", SET_VRING_KICK, () -> u64(v), () -> g.ring(v).kickFd());
    }

    private static void guestCall(QemuScript s, Guest g, int v) {
        s.send("SET_VRING_CALL(" + v + ") guest irqfd", SET_VRING_CALL, () -> u64(v), () -> g.ring(v).callFd());
    }

    /** GET_VRING_BASE: the split avail index, or QEMU's packed layout (avail and used position with wrap counters). */
    private static void getVringBase(QemuScript s, Guest g, int v) {
        s.get("GET_VRING_BASE(" + v + ")", GET_VRING_BASE, () -> vringState(v, 0), r -> {
            assertEquals(v, r.u32(0), "vring index");
            assertEquals(g.ring(v).base(), r.u32(4), "base of vring " + v);
            g.base[v] = r.u32(4);
        });
    }

    // ---- vhost-user-net (§4.1) -----------------------------------------------------------------

    /**
     * vhost-user-net with {@code g.queues / 2} queue pairs: netdev init (A), feature negotiation
     * (B), DRIVER_OK (C) with CONFIGURE_MEM_SLOTS, traffic, a guest driver reset (D) and driver
     * re-init (B, C again: regions are not re-sent), traffic, and QEMU shutdown (E).
     */
    public static QemuScript net(Guest g, Acks acks) {
        QemuScript s = new QemuScript(acks);
        int pairs = g.queues / 2;
        long[] features = new long[1];
        long mask = ~ProtocolFeatures.bit(ProtocolFeatures.CONFIG); // dropped for net, with a warning
        for (int i = 0; i < pairs; i++) {
            init(s, g, features, i == 0, 2 * i, 2, mask);
        }
        netFeatureNegotiation(s, pairs);
        netDriverOk(s, g, pairs, features, true);
        s.step("traffic on every queue", f -> g.traffic());
        netStop(s, g, pairs);
        s.step("guest driver re-initialises its rings", f -> g.newRings());
        netFeatureNegotiation(s, pairs);
        netDriverOk(s, g, pairs, features, false);
        s.step("traffic on every queue", f -> g.traffic());
        netStop(s, g, pairs);
        return s;
    }

    /** B: pair 0 attached, the others detached, before any ring is configured. */
    private static void netFeatureNegotiation(QemuScript s, int pairs) {
        enable(s, 0, true);
        enable(s, 1, true);
        for (int i = 1; i < pairs; i++) {
            enable(s, 2 * i, false);
            enable(s, 2 * i + 1, false);
        }
    }

    private static void netDriverOk(QemuScript s, Guest g, int pairs, long[] features, boolean sendRegions) {
        for (int i = 0; i < pairs; i++) {
            enable(s, 2 * i, true);
            enable(s, 2 * i + 1, true);
            s.send("SET_FEATURES", SET_FEATURES, () -> u64(g.acked(features[0]) | VirtioFeatures.bit(VirtioFeatures.PROTOCOL_FEATURES)), null);
            s.addStatus(FEATURES_OK);
            if (sendRegions) {
                addRegions(s, g); // every vhost_dev sends its own: identical duplicates from pair 1 on
            }
            for (int v = 2 * i; v < 2 * i + 2; v++) {
                ring(s, g, v);
                guestCall(s, g, v);
            }
            if (i == pairs - 1) {
                s.addStatus(ACKNOWLEDGE | DRIVER | DRIVER_OK);
            }
        }
    }

    /** D / E: status 0 arrives before the last pair's GET_VRING_BASE. */
    private static void netStop(QemuScript s, Guest g, int pairs) {
        for (int i = 0; i < pairs; i++) {
            if (i == pairs - 1) {
                s.send("SET_STATUS(0)", SET_STATUS, u64(0));
            }
            getVringBase(s, g, 2 * i);
            getVringBase(s, g, 2 * i + 1);
        }
    }

    // ---- vhost-user-blk (§4.2) -----------------------------------------------------------------

    /**
     * vhost-user-blk with {@code g.queues} queues: realize (A) with GET_CONFIG, DRIVER_OK (B),
     * traffic, a config write, a guest driver reset (C), DRIVER_OK again, traffic, and QEMU
     * shutdown (D). With {@code memSlots} memory goes by ADD_MEM_REG (sent once), else by
     * SET_MEM_TABLE on every start.
     */
    public static QemuScript blk(Guest g, Acks acks, boolean memSlots, byte[] config) {
        QemuScript s = new QemuScript(acks);
        long[] features = new long[1];
        long mask = memSlots ? -1L : ~ProtocolFeatures.bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS);
        init(s, g, features, true, 0, g.queues, mask);
        s.get("GET_CONFIG", GET_CONFIG, () -> Payloads.configRead(0, config.length), r -> {
            assertEquals(12 + config.length, r.payload().length);
            assertArrayEquals(config, Arrays.copyOfRange(r.payload(), 12, r.payload().length));
        });
        blkStart(s, g, features, memSlots, true);
        s.step("traffic on every queue", f -> g.traffic());
        // The guest turns its write cache off (echo "write through" > /sys/block/vda/queue/write_cache):
        // QEMU writes the one wce byte, and the whole config reads back with only that byte changed.
        s.acked("SET_CONFIG wce", SET_CONFIG, () -> Payloads.config(BLK_WCE_OFFSET, 1, 0, new byte[] {0}), null);
        s.get("GET_CONFIG", GET_CONFIG, () -> Payloads.configRead(BLK_WCE_OFFSET, 1),
                r -> assertEquals(0, r.payload()[12], "wce written"));
        s.get("GET_CONFIG", GET_CONFIG, () -> Payloads.configRead(0, config.length), r -> {
            byte[] want = config.clone();
            want[BLK_WCE_OFFSET] = 0;
            assertArrayEquals(want, Arrays.copyOfRange(r.payload(), 12, r.payload().length), "only wce changed");
        });
        blkStop(s, g);
        s.step("guest driver re-initialises its rings", f -> g.newRings());
        blkStart(s, g, features, memSlots, false);
        s.step("traffic on every queue", f -> g.traffic());
        blkStop(s, g);
        return s;
    }

    private static void blkStart(QemuScript s, Guest g, long[] features, boolean memSlots, boolean first) {
        long withProtocolFeatures = VirtioFeatures.bit(VirtioFeatures.PROTOCOL_FEATURES);
        s.send("SET_FEATURES", SET_FEATURES, () -> u64(g.acked(features[0]) | withProtocolFeatures), null);
        s.addStatus(FEATURES_OK);
        for (int v = 0; v < g.queues; v++) {
            guestCall(s, g, v); // blk unmasks everything up front
        }
        s.send("SET_FEATURES", SET_FEATURES, () -> u64(g.acked(features[0]) | withProtocolFeatures), null);
        s.addStatus(FEATURES_OK);
        if (!memSlots) {
            setMemTable(s, g);
        } else if (first) {
            addRegions(s, g); // QEMU's shadow table: unchanged regions are not sent again
        }
        for (int v = 0; v < g.queues; v++) {
            ring(s, g, v);
        }
        for (int v = 0; v < g.queues; v++) {
            enable(s, v, true);
        }
        s.addStatus(ACKNOWLEDGE | DRIVER | DRIVER_OK);
    }

    private static void blkStop(QemuScript s, Guest g) {
        s.send("SET_STATUS(0)", SET_STATUS, u64(0));
        for (int v = 0; v < g.queues; v++) {
            enable(s, v, false);
        }
        for (int v = 0; v < g.queues; v++) {
            getVringBase(s, g, v);
        }
    }
}
