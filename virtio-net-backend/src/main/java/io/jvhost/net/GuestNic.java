package io.jvhost.net;

import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.ring.ChainCursor;
import io.jvhost.core.ring.DescriptorChain;
import io.jvhost.core.ring.BufferBurst;
import io.jvhost.core.ring.VirtQueue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import org.jctools.queues.atomic.MpmcAtomicArrayQueue;
import org.jctools.queues.atomic.MpscAtomicArrayQueue;

/**
 * The guest's side of a virtio-net device, as ports see it: deliver frames into the guest's
 * receive queues (on the pair's poller) or inject them from any thread.
 */
public final class GuestNic {
    public static final int DELIVERED = 0, NO_BUFFERS = 1, DROPPED = 2, NOT_RUNNING = 3;
    static final int MAX_MERGED = 256;
    private static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final NetDevice device;
    private final Pair[] pairs;
    private final MpmcAtomicArrayQueue<Packet> pool;
    private final int packetSize;

    /** State of one queue pair: owned by its poller, except the injection and announcement queues. */
    static final class Pair {
        final int index;
        final NetCounters counters = new NetCounters();
        final MpscAtomicArrayQueue<Packet> injected = new MpscAtomicArrayQueue<>(1024);
        /** Frames the device sends on the guest's behalf (RARP), for the port on this pair's poller. */
        final MpscAtomicArrayQueue<Packet> announced = new MpscAtomicArrayQueue<>(16);
        volatile VirtQueue rx;
        volatile VirtQueue tx;
        // Mergeable receive bookkeeping, reused for every frame.
        final int[] heads = new int[MAX_MERGED];
        final long[] lengths = new long[MAX_MERGED];
        final MemorySegment header = MemorySegment.ofArray(new byte[NetDevice.HEADER_V1]);
        // Where the low and high byte of num_buffers lie in the frame's first chain, and the dirty
        // log to mark when they are stored (live migration; null otherwise).
        final MemorySegment[] numBuffersMemory = new MemorySegment[2];
        final long[] numBuffersOffset = new long[2];
        final long[] numBuffersGpa = new long[2];
        DirtyLog dirtyLog;
        /** Walks the receive chains; the pair's poller thread only. */
        final ChainCursor cursor = new ChainCursor();
        /** Receive buffers taken a burst at a time ({@link #deliver(int, MemorySegment[], long[], long[], int)}); the poller. */
        final BufferBurst burst = new BufferBurst();
        /** Frames delivered now answer the guest's own transmit burst (the pair's transmit queue is being served). */
        boolean answering;
        /** Completes offloads the guest did not accept; created on first need, the pair's poller only. */
        Segmenter segmenter;
        final NetHeader plain = new NetHeader();
        /** Where the segmenter's frames go: this pair's receive queue. */
        final Segmenter.Sink toGuest;
        /** The first segment's result that was not DELIVERED, and how many were, for the frame being cut. */
        int segmentResult, segmentsDelivered;

        Pair(int index, GuestNic nic) {
            this.index = index;
            this.toGuest = (frame, length) -> {
                if (segmentResult == DELIVERED) {
                    int r = nic.deliverPlain(this, frame, 0, length);
                    if (r == DELIVERED) {
                        segmentsDelivered++;
                    } else {
                        segmentResult = r;
                    }
                }
                if (segmentResult != DELIVERED && segmentsDelivered > 0) {
                    counters.addRxDropped(1); // out of buffers part way: the frame's other segments are lost
                }
            };
        }
    }

    GuestNic(NetDevice device, int pairCount, int packetSize, int poolSize) {
        this.device = device;
        this.pairs = new Pair[pairCount];
        for (int i = 0; i < pairCount; i++) {
            pairs[i] = new Pair(i, this);
        }
        this.packetSize = packetSize;
        this.pool = new MpmcAtomicArrayQueue<>(poolSize);
        MemorySegment slab = Arena.ofAuto().allocate((long) packetSize * poolSize, 64);
        for (int i = 0; i < poolSize; i++) {
            pool.offer(new Packet(slab.asSlice((long) i * packetSize, packetSize)));
        }
    }

    Pair pair(int i) {
        return pairs[i];
    }

    /** Queue pairs the device has (the guest may use fewer). */
    public int pairs() {
        return pairs.length;
    }

    /**
     * How many queue pairs, counting from pair 0, have a running receive queue: the pairs the guest
     * uses (virtio-net uses the first ones; without MQ only pair 0). Any thread.
     */
    int receivingPairs() {
        int n = 0;
        while (n < pairs.length && pairs[n].rx != null) {
            n++;
        }
        return n;
    }

    /** The MAC address configured for the guest (low 48 bits, network order in the high byte). */
    public long mac() {
        return device.mac();
    }

    public NetCounters counters(int pair) {
        return pairs[pair].counters;
    }

    /** The features the guest's driver accepted (0 before it did): which offloads it takes. Any thread. */
    public long acceptedFeatures() {
        return device.acked();
    }

    /** Largest frame (without the virtio header) the guest may send or receive. */
    public int maxFrame() {
        return device.maxFrame();
    }

    /**
     * Copies a frame, the bytes {@code [offset, offset + length)} of {@code frame}, into the guest's
     * receive queue of {@code pair}. Only on that pair's poller thread (inside {@link NetPort#poll}
     * or {@link NetPort#onFrame} for the same pair). Allocation-free. Returns {@link #DELIVERED},
     * {@link #NO_BUFFERS} (try again later), {@link #DROPPED} or {@link #NOT_RUNNING}. The used ring
     * is published at the end of the poller's batch.
     */
    public int deliver(int pair, MemorySegment frame, long offset, long length) {
        return deliverPlain(pairs[pair], frame, offset, length);
    }

    /**
     * Frames that answer the guest's own transmit burst are delivered and shown to it (a release
     * store, no fence: {@link BufferBurst#expose}) this many at a time, as DPDK's enqueue writes its
     * used descriptors a batch at a time: the guest, which waits for them, starts on the first while
     * the rest are copied, instead of the two sides taking turns. Loopback 64 B far apart, the guest
     * DPDK's virtio-user: +40 % on both layouts, groups of 8 ahead of 4 and 16 (perf/RESULTS.md
     * 2026-12-07). Frames that stream to the guest (a port's poll, another thread's inject) are
     * published whole: there each extra store into a line the guest is polling takes it back from
     * the guest's CPU (host to guest -15 to -38 % in groups of 8, same section).
     */
    static final int ANSWER_GROUP = 8;

    /**
     * Delivers {@code count} plain frames, frame {@code i} being the bytes {@code [offsets[i],
     * offsets[i] + lengths[i])} of {@code frames[i]}, as {@link #deliver(int, MemorySegment, long, long)}
     * would one after another, but a burst of receive buffers at a time when the guest posted one
     * buffer per frame (what its driver does): the buffers are checked together, then the headers
     * and frames stored, then the used elements written in one pass (frames that answer the
     * guest's transmit: {@link #ANSWER_GROUP} at a time, each group shown to it at once). Any other
     * buffer goes the frame-by-frame way. Returns how many frames were taken (delivered, or dropped and counted),
     * stopping at the first that found no buffer or no running queue. Same thread rule as
     * {@code deliver}; allocation-free.
     */
    public int deliver(int pair, MemorySegment[] frames, long[] offsets, long[] lengths, int count) {
        Pair p = pairs[pair];
        int done = 0;
        while (done < count) {
            VirtQueue q = p.rx;
            if (q == null) {
                return done;
            }
            int hdr = device.headerLength();
            BufferBurst b = p.burst;
            int want = p.answering ? Math.min(ANSWER_GROUP, count - done) : count - done;
            int n = b.takeWritable(q, want, hdr, lengths, done); // each chain big enough for its own frame
            if (n == 0) {
                int r = deliverPlain(p, frames[done], offsets[done], lengths[done]);
                if (r == NO_BUFFERS || r == NOT_RUNNING) {
                    return done;
                }
                done++;
                continue;
            }
            long bytes = 0;
            // All the headers, then all the frames, then the bookkeeping, as DPDK's enqueue defers its
            // small copies to the end of the burst. Far from the driver's CPU the first touch of each
            // buffer is a cross-CPU transfer; likely (not proven) the headers' loads then go out
            // together instead of each waiting behind the last frame's stores. Packed far +14-33 % (perf/RESULTS.md
            // 2026-12-06, 2026-12-07), split far +18 % (2026-12-08, 3 of 4 rounds; loopback alike).
            // Split near lost 10 % once and nothing in a second check (2026-12-07); it leads DPDK there
            // by 1.5-2x, far it was behind.
            for (int i = 0; i < n; i++) {
                storePlainHeader(b.memory(i), b.offset(i), hdr);
            }
            for (int i = 0; i < n; i++) {
                MemorySegment.copy(frames[done + i], offsets[done + i], b.memory(i), b.offset(i) + hdr, lengths[done + i]);
            }
            for (int i = 0; i < n; i++) {
                b.written(i, hdr + lengths[done + i]);
                bytes += lengths[done + i];
            }
            b.complete(n);
            if (p.answering) {
                b.expose();
            }
            p.counters.rxFrames += n;
            p.counters.rxBytes += bytes;
            done += n;
        }
        return done;
    }

    /**
     * Like {@link #deliver(int, MemorySegment, long, long)}, for a frame with offloads: given to the
     * guest with its header when the guest accepted them, else checksummed and segmented here (each
     * segment then delivered as a plain frame). {@code header} is only read. {@link #DROPPED} for a
     * header that does not fit the frame.
     */
    public int deliver(int pair, NetHeader header, MemorySegment frame, long offset, long length) {
        Pair p = pairs[pair];
        long accepted = device.acked();
        if (header.isPlain() && (header.flags() == 0 || !VirtioFeatures.has(accepted, VirtioFeatures.NET_GUEST_CSUM))) {
            return deliverPlain(p, frame, offset, length); // DATA_VALID only for a guest that takes it
        }
        if (header.acceptedBy(accepted)) {
            return deliverFrame(p, header, frame, offset, length);
        }
        if (p.rx == null) {
            return NOT_RUNNING;
        }
        if (p.segmenter == null) {
            p.segmenter = new Segmenter(Math.max(maxFrame(), NetDevice.JUMBO_FRAME));
        }
        p.segmentResult = DELIVERED;
        p.segmentsDelivered = 0;
        int r = p.segmenter.resolve(header, frame, offset, length, maxFrame(), p.toGuest);
        if (r != Segmenter.DONE) {
            p.counters.addRxDropped(1);
            return DROPPED;
        }
        // Nothing in yet: the caller may keep the frame for later (NO_BUFFERS) as for any other.
        return p.segmentsDelivered == 0 ? p.segmentResult : DELIVERED;
    }

    int deliverPlain(Pair p, MemorySegment frame, long offset, long length) {
        return deliverFrame(p, p.plain, frame, offset, length);
    }

    private int deliverFrame(Pair p, NetHeader h, MemorySegment frame, long offset, long length) {
        VirtQueue q = p.rx;
        if (q == null) {
            return NOT_RUNNING;
        }
        int r = device.mergeable() ? deliverMerged(p, q, h, frame, offset, length)
                : deliverSingle(p, q, h, frame, offset, length);
        if (r == DELIVERED) {
            p.counters.rxFrames++;
            p.counters.rxBytes += length;
        } else if (r == DROPPED) {
            p.counters.addRxDropped(1);
        }
        return r;
    }

    private int deliverSingle(Pair p, VirtQueue q, NetHeader h, MemorySegment frame, long offset, long length) {
        int hdr = device.headerLength();
        DescriptorChain c = q.next();
        if (c == null) {
            return NO_BUFFERS;
        }
        if (fitsOnePiece(p, c, hdr, length)) {
            writeWhole(p, q, c, hdr, h, frame, offset, length);
            return DELIVERED;
        }
        if (c.writableLength() < hdr + length) {
            q.complete(c, 0);
            return DROPPED;
        }
        p.header.fill((byte) 0);
        h.write(p.header, 0);
        if (hdr == NetDevice.HEADER_V1) {
            p.header.set(LE_SHORT, NetDevice.NUM_BUFFERS_OFFSET, (short) 1);
        }
        c.write(p.header, 0, 0, hdr);
        c.write(frame, offset, hdr, length);
        q.complete(c, hdr + length);
        return DELIVERED;
    }

    private int deliverMerged(Pair p, VirtQueue q, NetHeader h, MemorySegment frame, long offset, long length) {
        int hdr = NetDevice.HEADER_V1;
        long rejectedBefore = 0;
        int n = 0;
        long copied = 0;
        while (n == 0 || copied < length) {
            DescriptorChain c = q.next();
            if (c == null) {
                return giveBack(p, q, n, rejectedBefore);
            }
            if (n == 0) {
                if (fitsOnePiece(p, c, hdr, length)) {
                    writeWhole(p, q, c, hdr, h, frame, offset, length); // the common case: num_buffers is 1
                    return DELIVERED;
                }
                // Malformed chains skipped before this one were completed already and need no giving back.
                rejectedBefore = q.counters().chainsRejected();
            }
            if (n == MAX_MERGED) {
                q.rewind(1); // the chain just taken stays for the next frame
                return dropMerged(p, q, n); // this one would need more chains than a frame may take
            }
            long room = c.writableLength();
            long skip = 0;
            if (n == 0) {
                if (room < hdr) {
                    q.complete(c, 0); // every buffer holds at least a header (virtio 1.2 §5.1.6.3.1)
                    return DROPPED;
                }
                p.header.fill((byte) 0);
                h.write(p.header, 0);
                c.write(p.header, 0, 0, hdr);
                locateNumBuffers(p, c);
                skip = hdr;
            }
            long take = Math.min(room - skip, length - copied);
            c.write(frame, offset + copied, skip, take);
            p.heads[n] = c.head();
            p.lengths[n] = skip + take;
            copied += take;
            n++;
        }
        p.numBuffersMemory[0].set(ValueLayout.JAVA_BYTE, p.numBuffersOffset[0], (byte) n);
        p.numBuffersMemory[1].set(ValueLayout.JAVA_BYTE, p.numBuffersOffset[1], (byte) (n >>> 8));
        if (p.dirtyLog != null) {
            p.dirtyLog.mark(p.numBuffersGpa[0], 1);
            p.dirtyLog.mark(p.numBuffersGpa[1], 1);
        }
        for (int i = 0; i < n; i++) {
            q.complete(p.heads[i], p.lengths[i]);
        }
        return DELIVERED;
    }

    /**
     * Whether the chain's first (non-empty) writable buffer holds the header and the whole frame;
     * if so the pair's cursor is on it.
     */
    private static boolean fitsOnePiece(Pair p, DescriptorChain c, int hdr, long length) {
        ChainCursor b = p.cursor.writable(c, 0);
        return b.next(hdr + length) && b.length() == hdr + length;
    }

    /**
     * Writes the header (num_buffers 1 when it has that field) and the frame straight into the
     * piece {@link #fitsOnePiece} found: two plain stores and one copy, no staging and no
     * num_buffers lookup.
     */
    private static void writeWhole(Pair p, VirtQueue q, DescriptorChain c, int hdr, NetHeader h, MemorySegment frame,
                                   long offset, long length) {
        ChainCursor b = p.cursor;
        MemorySegment seg = b.memory();
        long at = b.offset();
        if (h.isPlain()) {
            storePlainHeader(seg, at, hdr);
        } else {
            h.write(seg, at);
            if (hdr == NetDevice.HEADER_V1) {
                seg.set(LE_SHORT, at + NetDevice.NUM_BUFFERS_OFFSET, (short) 1);
            }
        }
        MemorySegment.copy(frame, offset, seg, at + hdr, length);
        b.markWritten();
        q.complete(c, hdr + length);
    }

    /**
     * Stores a plain header of {@code hdr} bytes at {@code at}: flags, gso_type, hdr_len, gso_size,
     * csum_start and csum_offset 0, and num_buffers 1 when the header has it. Only where the buffer
     * holds something else, as DPDK does: the driver reads every frame's header, and a line left
     * unchanged stays shared by both CPUs instead of moving to ours and back for each frame (two
     * cross-CPU transfers when they are far apart).
     */
    private static void storePlainHeader(MemorySegment seg, long at, int hdr) {
        if (seg.get(LE_LONG, at) != 0L) {
            seg.set(LE_LONG, at, 0L);
        }
        if (hdr == NetDevice.HEADER_V1) {
            if (seg.get(LE_INT, at + 8) != 1 << 16) {
                seg.set(LE_INT, at + 8, 1 << 16);
            }
        } else if (seg.get(LE_SHORT, at + 8) != 0) {
            seg.set(LE_SHORT, at + 8, (short) 0);
        }
    }

    /**
     * Remembers where the two bytes of num_buffers lie in the first chain, which may split the
     * header over several buffers (virtio 1.2 §2.7.4: no assumptions about the descriptor layout).
     */
    private static void locateNumBuffers(Pair p, DescriptorChain c) {
        for (int i = 0; i < 2; i++) {
            ChainCursor b = p.cursor.writable(c, NetDevice.NUM_BUFFERS_OFFSET + i);
            b.next(1); // there is such a byte: the caller checked that the chain holds a header
            p.numBuffersMemory[i] = b.memory();
            p.numBuffersOffset[i] = b.offset();
            p.numBuffersGpa[i] = b.gpa();
        }
        p.dirtyLog = c.dirtyLog();
    }

    /**
     * Out of buffers mid-frame: return the chains for later. Drop the frame instead when that is
     * impossible (a malformed chain was completed among them) or pointless (the device holds the
     * whole ring, so the driver cannot add a buffer). With nothing taken there is nothing to lose.
     */
    private static int giveBack(Pair p, VirtQueue q, int taken, long rejectedBefore) {
        if (taken == 0 || (q.counters().chainsRejected() == rejectedBefore && taken < q.size())) {
            q.rewind(taken);
            return NO_BUFFERS;
        }
        return dropMerged(p, q, taken);
    }

    /** Completes the chains taken for a frame with 0 bytes: the driver gets them back empty. */
    private static int dropMerged(Pair p, VirtQueue q, int taken) {
        for (int i = 0; i < taken; i++) {
            q.complete(p.heads[i], 0);
        }
        return DROPPED;
    }

    /**
     * Queues a copy of the frame {@code [offset, offset + length)} of {@code frame} for the guest on
     * {@code pair}: copied into a pooled buffer, allocation-free. Any thread. Returns false (and
     * counts a drop) when the frame is too big or the queue or packet pool is full.
     */
    public boolean inject(int pair, MemorySegment frame, long offset, long length) {
        return inject(pair, null, frame, offset, length);
    }

    /**
     * Like {@link #inject(int, MemorySegment, long, long)}, for a frame with offloads (a copy of
     * {@code header} travels with it; null for none), completed on the pair's poller as
     * {@link #deliver(int, NetHeader, MemorySegment, long, long)} does.
     */
    public boolean inject(int pair, NetHeader header, MemorySegment frame, long offset, long length) {
        Pair p = pairs[pair];
        if (length > packetSize) {
            p.counters.addRxDropped(1);
            return false;
        }
        Packet packet = pool.poll();
        if (packet == null) {
            p.counters.addRxDropped(1);
            return false;
        }
        MemorySegment.copy(frame, offset, packet.buffer, 0, length);
        packet.length = (int) length;
        if (header == null) {
            packet.header.clear();
        } else {
            packet.header.copyFrom(header);
        }
        if (!p.injected.offer(packet)) {
            pool.offer(packet);
            p.counters.addRxDropped(1);
            return false;
        }
        wake(p);
        return true;
    }

    /** Wakes the poller of {@code p}, if one of its queues runs (else it looks when they start). */
    private static void wake(Pair p) {
        VirtQueue q = p.rx != null ? p.rx : p.tx;
        if (q != null) {
            q.wakePoller();
        }
    }

    /**
     * Hands {@code frame} to the port on the poller of {@code pair}, as if the guest had sent it
     * (the RARP announcement after a migration): copied into a pooled buffer, and given to
     * {@link NetPort#onFrame} on the pair's next duty cycle, once one of its queues runs. Any
     * thread; the control thread uses it. False when no buffer is free.
     */
    boolean announce(int pair, byte[] frame) {
        Pair p = pairs[pair];
        Packet packet = frame.length <= packetSize ? pool.poll() : null;
        if (packet == null) {
            return false;
        }
        MemorySegment.copy(frame, 0, packet.buffer, ValueLayout.JAVA_BYTE, 0, frame.length);
        packet.length = frame.length;
        packet.header.clear();
        if (!p.announced.offer(packet)) {
            pool.offer(packet);
            return false;
        }
        wake(p);
        return true;
    }

    /** Hands the frames {@link #announce}d on {@code p} to {@code port}; the pair's poller. */
    int drainAnnounced(Pair p, NetPort port) {
        int n = 0;
        for (Packet packet; (packet = p.announced.poll()) != null; n++) {
            try {
                port.onFrame(this, p.index, packet.buffer, 0, packet.length);
            } finally {
                pool.offer(packet);
            }
        }
        if (n > 0) {
            port.flush(this, p.index);
        }
        return n;
    }

    /** Delivers injected frames on the pair's poller; returns how many left the queue. */
    int drainInjected(Pair p) {
        int n = 0;
        for (Packet packet; (packet = p.injected.peek()) != null; ) {
            int r = deliver(p.index, packet.header, packet.buffer, 0, packet.length);
            if (r == NO_BUFFERS || r == NOT_RUNNING) {
                break;
            }
            p.injected.poll();
            pool.offer(packet);
            n++;
        }
        return n;
    }
}
