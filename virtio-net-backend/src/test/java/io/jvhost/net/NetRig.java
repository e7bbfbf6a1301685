package io.jvhost.net;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.ring.QueueCounters;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.DeviceRig;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A virtio-net backend in this process, served over a real Unix socket, and a simulated guest that
 * drives it: a {@link Frontend} speaking QEMU 7.2's sequences, {@link GuestRam}, and a receive and a
 * transmit {@link DriverQueue} per queue pair. Test thread only (the port may be driven from others).
 */
final class NetRig extends DeviceRig {
    static final int QUEUE_SIZE = 256;
    static final long GUEST_MAC = 0x52_54_00_12_34_56L;
    // virtio 1.2 §5.1.3 and §6, written out here rather than taken from the code under test.
    static final long MRG_RXBUF = 1L << 15, MQ = 1L << 22, INDIRECT_DESC = 1L << 28, EVENT_IDX = 1L << 29,
            VERSION_1 = 1L << 32;
    /** What a modern driver takes besides the device's own bits. */
    static final long MODERN = VERSION_1 | EVENT_IDX | INDIRECT_DESC;
    /** struct virtio_net_hdr_v1 (§5.1.6), and the legacy header without num_buffers. */
    static final int HEADER = 12, LEGACY_HEADER = 10, NUM_BUFFERS_OFFSET = 10;
    /** What the guest leaves in its receive buffers, so bytes the device did not write show. */
    static final byte UNWRITTEN = (byte) 0xEE;

    final NetDevice device;
    private DriverQueue[] queues = new DriverQueue[0];
    private final List<Map<Integer, Buffer[]>> posted = new ArrayList<>();
    private int[] consumed = new int[0];
    private int headerLength = HEADER;
    private boolean mergeable;
    /** Whether received headers must be all zero but num_buffers (no offloads expected). */
    boolean plainHeaders = true;

    private NetRig(NetDevice device, DriverQueue.Layout layout) throws IOException {
        super("net-sim", device, BackendOptions.DEFAULT, 2 * device.nic().pairs(), 64 << 20, layout, false);
        this.device = device;
    }

    static NetRig serve(NetPort port, int pairs) throws IOException {
        return serve(port, pairs, GUEST_MAC, NetDevice.DEFAULT_MTU);
    }

    /** As {@link #serve(NetPort, int)}, the guest's driver on rings of {@code layout}. */
    static NetRig serve(NetPort port, int pairs, DriverQueue.Layout layout) throws IOException {
        return new NetRig(new NetDevice(port, pairs, GUEST_MAC, NetDevice.DEFAULT_MTU), layout);
    }

    /** Serves a NIC with {@code pairs} queue pairs on {@code port} and connects a frontend with QEMU's handshake. */
    static NetRig serve(NetPort port, int pairs, long mac, int mtu) throws IOException {
        return new NetRig(new NetDevice(port, pairs, mac, mtu), DriverQueue.Layout.SPLIT);
    }

    /** Starts every queue pair as QEMU does at DRIVER_OK, the driver accepting {@code features}. */
    NetRig start(long features) throws IOException {
        return start(features, device.nic().pairs(), QUEUE_SIZE);
    }

    /**
     * Starts the first {@code pairsUsed} queue pairs, each queue of {@code queueSize} descriptors;
     * the others stay as a guest that uses fewer pairs leaves them: never started.
     */
    NetRig start(long features, int pairsUsed, int queueSize) throws IOException {
        if ((features & ~offered) != 0) {
            throw new IllegalArgumentException(String.format("features 0x%x were not offered", features & ~offered));
        }
        mergeable = (features & MRG_RXBUF) != 0;
        headerLength = (features & (VERSION_1 | MRG_RXBUF)) != 0 ? HEADER : LEGACY_HEADER;
        consumed = new int[2 * pairsUsed];
        posted.clear();
        for (int i = 0; i < consumed.length; i++) {
            posted.add(new HashMap<>());
        }
        queues = startQueues(features, 2 * pairsUsed, queueSize);
        return this;
    }

    DriverQueue rx(int pair) {
        return queues[2 * pair];
    }

    DriverQueue tx(int pair) {
        return queues[2 * pair + 1];
    }

    /** The header length the negotiated features call for. */
    int headerLength() {
        return headerLength;
    }

    NetCounters counters(int pair) {
        return device.nic().counters(pair);
    }

    QueueCounters queueCounters(int queue) {
        return backend.queue(queue).counters();
    }

    // ---- receive (device to driver) -----------------------------------------------------------

    /** Posts {@code count} receive chains of one writable buffer of {@code length} bytes; returns their heads. */
    int[] postRx(int pair, int count, int length) {
        int[] heads = new int[count];
        for (int i = 0; i < count; i++) {
            heads[i] = postRxChain(pair, length);
        }
        return heads;
    }

    /** Posts one receive chain of writable buffers of {@code lengths}, filled with {@link #UNWRITTEN}. */
    int postRxChain(int pair, int... lengths) {
        Buffer[] buffers = new Buffer[lengths.length];
        for (int i = 0; i < lengths.length; i++) {
            long gpa = ram.allocate(Math.max(1, lengths[i]) + 8, 8);
            ram.at(gpa, lengths[i] + 8).fill(UNWRITTEN);
            buffers[i] = Buffer.writable(gpa, lengths[i]);
        }
        return post(2 * pair, buffers);
    }

    /** One used receive chain: its head, used length, and the bytes its buffers hold up to that length. */
    record RxChain(int head, int usedLength, byte[] bytes) {}

    /** One received frame: the virtio-net header and frame it carried, and the chains it took. */
    record RxFrame(byte[] header, byte[] frame, List<RxChain> chains) {
        int numBuffers() {
            return header.length < HEADER ? 1
                    : ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN).getShort(NUM_BUFFERS_OFFSET) & 0xFFFF;
        }

        int[] usedLengths() {
            return chains.stream().mapToInt(RxChain::usedLength).toArray();
        }
    }

    /** Waits for the next used receive chain of {@code pair}. */
    RxChain awaitRxChain(int pair) {
        Used u = awaitUsed(2 * pair);
        Buffer[] buffers = posted.get(2 * pair).remove(u.id());
        assertNotNull(buffers, "used element names chain " + u.id() + ", which is not outstanding");
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        int left = u.length();
        for (Buffer b : buffers) {
            int n = Math.min(left, b.length());
            out.writeBytes(ram.at(b.gpa(), n).toArray(ValueLayout.JAVA_BYTE));
            left -= n;
        }
        if (left > 0) {
            fail("used length " + u.length() + " exceeds the " + (u.length() - left) + " bytes of chain " + u.id());
        }
        // A device MAY write more than it reports (virtio 1.2 §2.7.8.2), but for a frame it delivers
        // jvhost writes exactly the header and frame: nothing past the used length changes.
        if (u.length() == 0) {
            return new RxChain(u.id(), 0, new byte[0]);
        }
        int skip = u.length();
        for (Buffer b : buffers) {
            int from = Math.min(skip, b.length());
            skip -= from;
            byte[] rest = ram.at(b.gpa() + from, b.length() - from).toArray(ValueLayout.JAVA_BYTE);
            byte[] untouched = new byte[rest.length];
            Arrays.fill(untouched, UNWRITTEN);
            assertArrayEquals(untouched, rest, "bytes past the used length of chain " + u.id() + " were written");
        }
        return new RxChain(u.id(), u.length(), out.toByteArray());
    }

    /**
     * Waits for one frame on {@code pair}: one chain, and with mergeable buffers as many more as the
     * header's num_buffers says; checks the rest of the header is zero (no offloads were offered).
     */
    RxFrame awaitFrame(int pair) {
        List<RxChain> chains = new ArrayList<>();
        RxChain first = awaitRxChain(pair);
        chains.add(first);
        if (first.usedLength() < headerLength) {
            fail("chain " + first.head() + " used for " + first.usedLength() + " bytes, less than a header");
        }
        byte[] header = Arrays.copyOf(first.bytes(), headerLength);
        ByteArrayOutputStream frame = new ByteArrayOutputStream();
        frame.write(first.bytes(), headerLength, first.usedLength() - headerLength);
        RxFrame f = new RxFrame(header, null, chains);
        int numBuffers = f.numBuffers();
        if (!mergeable) {
            if (headerLength == HEADER) {
                assertEquals(1, numBuffers, "num_buffers without mergeable buffers");
            }
        } else {
            if (numBuffers < 1) {
                fail("num_buffers " + numBuffers);
            }
            for (int i = 1; i < numBuffers; i++) {
                RxChain c = awaitRxChain(pair);
                chains.add(c);
                frame.writeBytes(c.bytes());
            }
        }
        if (plainHeaders) {
            assertArrayEquals(new byte[NUM_BUFFERS_OFFSET], Arrays.copyOf(header, NUM_BUFFERS_OFFSET),
                    "flags, gso and checksum fields of the header");
        }
        return new RxFrame(header, frame.toByteArray(), chains);
    }

    // ---- transmit (driver to device) ------------------------------------------------------------

    /** What a driver puts on a transmit queue: a zeroed header of the negotiated length, then the frame. */
    byte[] packet(byte[] frame) {
        byte[] p = new byte[headerLength + frame.length];
        System.arraycopy(frame, 0, p, headerLength, frame.length);
        return p;
    }

    /**
     * Sends header and frame as one chain of readable buffers cut at {@code cuts} (ascending offsets
     * into header + frame; equal cuts make empty buffers); kicks and returns the head.
     */
    int send(int pair, byte[] frame, int... cuts) {
        return post(2 * pair + 1, readable(packet(frame), cuts));
    }

    /** Sends {@code frame} behind a header whose first 10 bytes are {@code offloads}, in one buffer; waits for it. */
    void transmit(int pair, byte[] offloads, byte[] frame) {
        byte[] p = packet(frame);
        System.arraycopy(offloads, 0, p, 0, offloads.length);
        int head = post(2 * pair + 1, readable(p));
        assertEquals(new Used(head, 0), awaitTx(pair), "transmit chains complete with 0 bytes written");
    }

    /** As {@link #send}, the buffers in an indirect table. */
    int sendIndirect(int pair, byte[] frame, int... cuts) {
        DriverQueue q = tx(pair);
        Buffer[] buffers = readable(packet(frame), cuts);
        int head = q.indirectChain(buffers);
        posted.get(q.index()).put(head, buffers);
        q.makeAvailable(head);
        q.kick();
        return head;
    }

    /** Sends {@code frame} in one buffer and waits until the device has completed it with 0 bytes. */
    void transmit(int pair, byte[] frame, int... cuts) {
        int head = send(pair, frame, cuts);
        assertEquals(new Used(head, 0), awaitTx(pair), "transmit chains complete with 0 bytes written");
    }

    /** Places {@code bytes} in fresh guest memory as readable buffers cut at {@code cuts}. */
    Buffer[] readable(byte[] bytes, int... cuts) {
        Buffer[] buffers = new Buffer[cuts.length + 1];
        int from = 0;
        for (int i = 0; i <= cuts.length; i++) {
            int to = i < cuts.length ? cuts[i] : bytes.length;
            buffers[i] = Buffer.readable(put(Arrays.copyOfRange(bytes, from, to)), to - from);
            from = to;
        }
        return buffers;
    }

    /** Copies {@code bytes} to fresh guest memory and returns their address. */
    long put(byte[] bytes) {
        long gpa = ram.allocate(Math.max(1, bytes.length), 8);
        MemorySegment.copy(bytes, 0, ram.at(gpa, bytes.length), ValueLayout.JAVA_BYTE, 0, bytes.length);
        return gpa;
    }

    /** Waits for the next used element on the transmit queue of {@code pair}. */
    Used awaitTx(int pair) {
        Used u = awaitUsed(2 * pair + 1);
        posted.get(2 * pair + 1).remove(u.id());
        return u;
    }

    // ---- rings --------------------------------------------------------------------------------

    /** Chains {@code buffers} on queue {@code q}, makes them available, kicks; returns the head. */
    int post(int q, Buffer... buffers) {
        int head = queues[q].post(buffers);
        posted.get(q).put(head, buffers);
        return head;
    }

    /** Remembers a chain written by hand on queue {@code q} (e.g. a malformed one) as outstanding. */
    void outstanding(int q, int head) {
        posted.get(q).put(head, new Buffer[0]);
    }

    Used awaitUsed(int q) {
        Used u = queues[q].awaitUsed(TIMEOUT);
        assertNotNull(u, "no used element on queue " + q + " within " + TIMEOUT + " (" + consumed[q] + " so far)");
        consumed[q]++;
        return u;
    }

    /** Asserts the device has published no used element on queue {@code q} beyond those taken. */
    void assertNothingMoreUsed(int q) {
        if (queues[q].isPacked()) {
            assertFalse(queues[q].hasUsed(), "a used descriptor on queue " + q + " after " + consumed[q]);
            return;
        }
        assertEquals(consumed[q] & 0xFFFF, queues[q].usedIdx(), "used elements on queue " + q);
    }

    /**
     * Waits until the device has looked at the receive ring of {@code pair} at least once more:
     * each look reads descriptors, given back or not.
     */
    void awaitDeviceLooksAtRx(int pair, long descriptorsBefore) {
        await(() -> queueCounters(2 * pair).descriptors > descriptorsBefore, "the device to try the receive queue");
    }

    /** Polls {@code condition} until it holds, or fails after {@link #TIMEOUT}. */
    static void await(BooleanSupplier condition, String what) {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("timed out after " + TIMEOUT + " waiting for " + what);
            }
            LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(50));
        }
    }

    // ---- frames -------------------------------------------------------------------------------

    /** An Ethernet frame of {@code length} bytes from {@code src} to {@code dst} whose payload differs with {@code seed}. */
    static byte[] frame(long dst, long src, int length, int seed) {
        byte[] f = new byte[length];
        for (int i = 0; i < length; i++) {
            f[i] = (byte) (seed * 131 + i * 7 + (i >>> 8) * 3 + 1);
        }
        for (int i = 0; i < 6 && i < length; i++) {
            f[i] = (byte) (dst >>> (40 - 8 * i));
        }
        for (int i = 0; i < 6 && 6 + i < length; i++) {
            f[6 + i] = (byte) (src >>> (40 - 8 * i));
        }
        if (length >= 14) {
            f[12] = (byte) 0x88; // local experimental ethertype
            f[13] = (byte) 0xB5;
        }
        return f;
    }

    static byte[] frame(int length, int seed) {
        return frame(0x02_00_00_00_00_99L, GUEST_MAC, length, seed);
    }
}
