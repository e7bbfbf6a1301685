package io.jvhost.net;

import static io.jvhost.core.device.VirtioFeatures.*;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.testkit.fuzz.BackendHealth;
import io.jvhost.testkit.fuzz.Features;
import io.jvhost.testkit.fuzz.FuzzInput;
import io.jvhost.testkit.fuzz.FuzzTarget;
import io.jvhost.core.ring.ChainError;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The virtio-net data path of a real {@link NetDevice} whose port reflects every frame back to the
 * guest ({@link BenchPorts.Reflect}), served over a socket, with and without mergeable receive
 * buffers: an input becomes receive chains of any layout (buffer count and lengths, readable
 * buffers among them, indirect, hostile addresses) and transmit chains of any virtio-net header
 * and frame length, split over any number of buffers.
 *
 * <p>A failure is an exception escaping the poller, a poller thread dying, a transmit chain never
 * completed (or completed with a length: the device writes nothing there), or a receive chain
 * completed that was not posted or with more bytes than it can hold. Guest RAM is 64 MiB;
 * everything above is unmapped.
 */
public final class NetFuzzTarget implements FuzzTarget {
    static final int QUEUE_SIZE = 256, TX_AREA = 8 << 20, RX_AREA = 8 << 20;
    private static final Duration TIMEOUT = Duration.ofSeconds(5);
    private static final int[] FRAME_LENGTHS = {60, 14, 1514, 13, 0, 1518, 1519, 64, 9000, 65535, 65536, 1500, 15, 100,
            4096, 1522, 1523, 2048, 42, 65550, 8, 1, 256, 9018};
    private static final int[] RX_LENGTHS = {1526, 2048, 12, 0, 1, 11, 10, 64, 60, 4096, 65562, 0x7FFF_FFFF, 0x8000_0000,
            0xFFFF_FFFF, 1514, 13, 100, 1536, 9216, 512, 72, 24, 16, 65536};

    /** One rig: 0 with mergeable receive buffers, 1 without. */
    private final Rig[] rigs = new Rig[2];

    private static final class Rig {
        final NetRig net;
        final DriverQueue rx, tx;
        final long txArea, rxArea, ramSize;
        /** Indirect tables: one of 8 entries per descriptor slot of each queue, reused with the slot. */
        final long tables;
        final ArrayDeque<Integer> rxFree = new ArrayDeque<>();
        final Map<Integer, int[]> rxSlots = new HashMap<>();
        final Map<Integer, Long> rxRoom = new HashMap<>();
        final BackendHealth health;

        Rig(boolean mergeable) throws Exception {
            net = NetRig.serve(new BenchPorts.Reflect(), 1);
            long features = NetRig.MODERN | (mergeable ? NetRig.MRG_RXBUF : 0) | (net.offered & (1L << NET_MTU
                    | 1L << NET_MAC | 1L << NET_STATUS));
            net.start(features, 1, QUEUE_SIZE);
            rx = net.rx(0);
            tx = net.tx(0);
            ramSize = net.ram.size();
            txArea = net.ram.allocate(TX_AREA, 4096);
            rxArea = net.ram.allocate(RX_AREA, 4096);
            tables = net.ram.allocate(2L * QUEUE_SIZE * 8 * 16, 4096);
            for (int i = 0; i < QUEUE_SIZE; i++) {
                rxFree.add(i);
            }
            health = BackendHealth.of(net.backend);
        }
    }

    /** One buffer of a chain as the driver describes it. */
    private record Buf(long gpa, int length, boolean writable) {}

    public NetFuzzTarget() throws Exception {
        rigs[0] = new Rig(true);
        rigs[1] = new Rig(false);
    }

    @Override
    public String name() {
        return "net";
    }

    @Override
    public int maxLength() {
        return 2048;
    }

    @Override
    public void run(byte[] input, Features features) throws Exception {
        FuzzInput in = new FuzzInput(input);
        int which = in.below(2);
        Rig r = rigs[which];
        String mode = which == 0 ? "mrg-" : "single-";
        boolean exposed = false;
        long rejectedBefore = r.net.backend.queue(0).counters().chainsRejected()
                + r.net.backend.queue(1).counters().chainsRejected();
        NetCounters before = snapshot(r.net.counters(0));
        // Receive chains, while descriptors are free: they stay posted across inputs until used.
        int rxChains = in.below(6);
        for (int c = 0; c < rxChains && r.rxFree.size() >= 8; c++) {
            int n = 1 + in.below(4);
            List<Buf> bufs = new ArrayList<>();
            long room = 0;
            for (int b = 0; b < n; b++) {
                int length = in.choose(RX_LENGTHS);
                boolean writable = in.below(8) != 7;
                long gpa = rxAddress(in, r, length);
                exposed |= length != 0 && (Long.compareUnsigned(gpa, r.txArea) < 0
                        && gpa + Integer.toUnsignedLong(length) > r.rx.descHva() - GuestRam.HVA_BASE);
                bufs.add(new Buf(gpa, length, writable));
                room += writable ? Integer.toUnsignedLong(length) : 0;
            }
            int head = post(r.rx, r.rxFree, r.rxSlots, bufs, in.below(4) == 3, r);
            r.rxRoom.put(head, room);
        }
        r.rx.kick();
        // Transmit chains: header and frame, from fresh space (the device only reads them).
        long[] next = {r.txArea};
        ArrayDeque<Integer> txFree = new ArrayDeque<>();
        for (int i = 0; i < QUEUE_SIZE; i++) {
            txFree.add(i);
        }
        Map<Integer, int[]> txSlots = new HashMap<>();
        int txChains = 1 + in.below(6);
        List<Integer> txHeads = new ArrayList<>();
        for (int c = 0; c < txChains; c++) {
            int header = in.choose(12, 12, 10, 0, 11, 13, 24);
            int frame = in.choose(FRAME_LENGTHS);
            long total = header + Integer.toUnsignedLong(frame);
            int pieces = 1 + in.below(4);
            List<Buf> bufs = new ArrayList<>();
            long left = total;
            for (int p = 0; p < pieces && left > 0; p++) {
                long piece = p == pieces - 1 ? left : Math.min(left, in.between(1, 2048));
                long gpa = txAddress(in, r, next, piece);
                fill(r, gpa, piece, in);
                bufs.add(new Buf(gpa, (int) piece, false));
                left -= piece;
            }
            if (in.below(8) == 7) {
                bufs.add(new Buf(txAddress(in, r, next, 64), in.choose(64, 0, 1, 1514), true));
            }
            if (bufs.isEmpty()) {
                bufs.add(new Buf(txAddress(in, r, next, 16), 0, false));
            }
            txHeads.add(post(r.tx, txFree, txSlots, bufs, in.below(4) == 3, r));
        }
        r.tx.kick();
        for (int i = 0; i < txHeads.size(); i++) {
            Used u = r.tx.awaitUsed(TIMEOUT);
            if (u == null) {
                r.health.check();
                throw new AssertionError("only " + i + " of " + txHeads.size() + " transmit chains completed within " + TIMEOUT);
            }
            if (!txHeads.contains(u.id()) && !exposed) {
                throw new AssertionError("transmit used element names " + u.id() + ", not a posted head " + txHeads);
            }
            if (u.length() != 0 && !exposed) {
                throw new AssertionError("transmit chain " + u.id() + " completed with length " + u.length());
            }
        }
        // Receive completions were published in the same transmit cycle: take them all.
        for (Used u; (u = r.rx.awaitUsed(Duration.ZERO)) != null; ) {
            Long room = r.rxRoom.remove(u.id());
            int[] slots = r.rxSlots.remove(u.id());
            if (exposed) {
                continue;
            }
            if (room == null || slots == null) {
                throw new AssertionError("receive used element names " + u.id() + ", not a posted head");
            }
            for (int s : slots) {
                r.rxFree.add(s);
            }
            if (Integer.toUnsignedLong(u.length()) > room) {
                throw new AssertionError("receive chain " + u.id() + " completed with " + Integer.toUnsignedLong(u.length())
                        + " bytes in " + room + " writable bytes");
            }
            features.hit(mode + "rx-used-" + (u.length() == 0 ? "0" : "n"));
        }
        r.health.check();
        if (exposed || r.net.backend.queue(0).isBroken() || r.net.backend.queue(1).isBroken()) {
            if (!exposed) {
                throw new AssertionError("a queue latched broken by well-formed ring traffic");
            }
            features.hit(mode + "rings-exposed");
            rigs[which].net.close();
            rigs[which] = new Rig(which == 0);
            return;
        }
        NetCounters after = r.net.counters(0);
        features.hit(mode + "tx-frames", Math.min(after.txFrames - before.txFrames, 2));
        features.hit(mode + "tx-dropped", Math.min(after.txDropped - before.txDropped, 2));
        features.hit(mode + "rx-frames", Math.min(after.rxFrames - before.rxFrames, 2));
        features.hit(mode + "rx-dropped", Math.min(after.rxDropped - before.rxDropped, 2));
        if (r.net.backend.queue(0).counters().chainsRejected() + r.net.backend.queue(1).counters().chainsRejected()
                != rejectedBefore) {
            for (int q = 0; q < 2; q++) {
                for (Map.Entry<ChainError, Long> e : r.net.backend.queue(q).counters().rejectedByError().entrySet()) {
                    features.hit(mode + (q == 0 ? "rx" : "tx") + "-rejected", e.getKey());
                }
            }
        }
    }

    private static NetCounters snapshot(NetCounters c) {
        NetCounters s = new NetCounters();
        s.rxFrames = c.rxFrames;
        s.rxDropped = c.rxDropped;
        s.txFrames = c.txFrames;
        s.txDropped = c.txDropped;
        return s;
    }

    /** Writes {@code bufs} as a chain (or an indirect table) into free descriptors; returns its head. */
    private static int post(DriverQueue q, ArrayDeque<Integer> free, Map<Integer, int[]> slotsOf, List<Buf> bufs,
                            boolean indirect, Rig r) {
        int n = indirect ? 1 : bufs.size();
        int[] slots = new int[n];
        for (int i = 0; i < n; i++) {
            slots[i] = free.poll();
        }
        if (indirect) {
            long table = r.tables + 16L * 8 * slots[0] + (q == r.rx ? 0 : 16L * 8 * QUEUE_SIZE); // one per head slot
            for (int i = 0; i < bufs.size(); i++) {
                Buf b = bufs.get(i);
                q.writeIndirect(table, i, b.gpa(), b.length(), (b.writable() ? DriverQueue.F_WRITE : 0)
                        | (i + 1 < bufs.size() ? DriverQueue.F_NEXT : 0), i + 1);
            }
            q.writeDescriptor(slots[0], table, 16 * bufs.size(), DriverQueue.F_INDIRECT, 0);
        } else {
            for (int i = 0; i < n; i++) {
                Buf b = bufs.get(i);
                q.writeDescriptor(slots[i], b.gpa(), b.length(), (b.writable() ? DriverQueue.F_WRITE : 0)
                        | (i + 1 < n ? DriverQueue.F_NEXT : 0), i + 1 < n ? slots[i + 1] : 0);
            }
        }
        slotsOf.put(slots[0], slots);
        q.makeAvailable(slots[0]);
        return slots[0];
    }

    /** Receive buffers may overlap each other (their contents are not checked), never anything else. */
    private static long rxAddress(FuzzInput in, Rig r, int length) {
        long len = Integer.toUnsignedLong(length);
        return switch (in.below(64)) {
            case 60 -> r.ramSize - in.between(0, 64); // runs past the end of guest RAM
            case 61 -> -1L - in.u16(); // wraps at 2^64
            case 62 -> in.u64();
            case 63 -> r.rx.descHva() - GuestRam.HVA_BASE; // over the rings: the guest's own undoing
            default -> len > RX_AREA ? r.rxArea : r.rxArea + ((in.u32() & 0x7FFF_FFFFL) % (RX_AREA - len + 1) & ~7L);
        };
    }

    private static long txAddress(FuzzInput in, Rig r, long[] next, long length) {
        return switch (in.below(16)) {
            case 13 -> r.ramSize - in.between(0, 64);
            case 14 -> -1L - in.u16();
            case 15 -> in.u64();
            default -> {
                long at = next[0];
                if (length > r.txArea + TX_AREA - at) {
                    yield r.ramSize + 4096; // no room left: unmapped
                }
                next[0] = (at + length + 7) & ~7L;
                yield at;
            }
        };
    }

    /** Frame bytes: the first few from the input (MACs, ethertype), the rest left as they are. */
    private static void fill(Rig r, long gpa, long length, FuzzInput in) {
        if (gpa >= r.txArea && gpa < r.txArea + TX_AREA && length <= r.txArea + TX_AREA - gpa) {
            int n = (int) Math.min(length, 32);
            MemorySegment.copy(in.bytes(n), 0, r.net.ram.at(gpa, n), ValueLayout.JAVA_BYTE, 0, n);
        }
    }

    @Override
    public void reset() throws Exception {
        close();
        rigs[0] = new Rig(true);
        rigs[1] = new Rig(false);
    }

    @Override
    public void close() throws Exception {
        for (Rig r : rigs) {
            if (r != null) {
                r.net.close();
            }
        }
    }
}
