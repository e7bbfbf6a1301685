package io.jvhost.blk;

import io.jvhost.core.device.DeviceContext;
import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.testkit.DeviceRig;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * A virtio-blk backend in this process, served over a real Unix socket, and a simulated guest that
 * drives it: a {@link Frontend} speaking QEMU 7.2's sequences, {@link GuestRam} and one
 * {@link DriverQueue} per request queue. Owns the store it is given. Test thread only.
 */
final class BlkRig extends DeviceRig {
    static final Duration REPLY_TIMEOUT = DeviceRig.TIMEOUT;
    static final Duration USED_TIMEOUT = DeviceRig.TIMEOUT;
    static final int QUEUE_SIZE = 256;
    static final int SECTOR = 512;
    /** The value the guest leaves in a status byte, so one the device never wrote shows. */
    static final byte UNWRITTEN = 0x7F;
    // virtio 1.2 §5.2, written out here rather than taken from the code under test.
    static final int IN = 0, OUT = 1, FLUSH = 4, GET_ID = 8, DISCARD = 11, WRITE_ZEROES = 13;
    static final int OK = 0, IOERR = 1, UNSUPP = 2;
    static final int FLAG_UNMAP = 1;
    static final long RING_FEATURES = VirtioFeatures.bit(VirtioFeatures.VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.RING_EVENT_IDX) | VirtioFeatures.bit(VirtioFeatures.RING_INDIRECT_DESC);

    final BlockStore store;
    final BlkDevice device;
    final BlkQueueHandler[] handlers;
    private DriverQueue[] queues = new DriverQueue[0];

    private BlkRig(BlockStore store, BlkDevice device, BlkQueueHandler[] handlers, BackendOptions options,
                   DriverQueue.Layout layout) throws IOException {
        super("blk-sim", new Watched(device, handlers), options, handlers.length, 32 << 20, layout, false);
        this.store = store;
        this.device = device;
        this.handlers = handlers;
    }

    /** Serves {@code store} with {@code queues} request queues and connects a frontend with QEMU's handshake. */
    static BlkRig serve(BlockStore store, int queues) throws IOException {
        return serve(store, queues, BackendOptions.DEFAULT);
    }

    /** As {@link #serve(BlockStore, int)}, the backend run with {@code options} (e.g. a queue map). */
    static BlkRig serve(BlockStore store, int queues, BackendOptions options) throws IOException {
        return serve(store, queues, options, DriverQueue.Layout.SPLIT);
    }

    /** As {@link #serve(BlockStore, int)}, the guest's driver on rings of {@code layout}. */
    static BlkRig serve(BlockStore store, int queues, DriverQueue.Layout layout) throws IOException {
        return serve(store, queues, BackendOptions.DEFAULT, layout);
    }

    static BlkRig serve(BlockStore store, int queues, BackendOptions options, DriverQueue.Layout layout)
            throws IOException {
        try {
            return new BlkRig(store, new BlkDevice(store, queues), new BlkQueueHandler[queues], options, layout);
        } catch (IOException | RuntimeException e) {
            store.close();
            throw e;
        }
    }

    static long bit(int feature) {
        return 1L << feature;
    }

    boolean offers(int feature) {
        return (offered & bit(feature)) != 0;
    }

    /** Starts every queue as QEMU does at DRIVER_OK, with the driver accepting everything offered. */
    BlkRig start() throws IOException {
        return start(offered);
    }

    /** Starts every queue with the driver accepting {@code features}. */
    BlkRig start(long features) throws IOException {
        return start(features, QUEUE_SIZE);
    }

    /** Starts every queue, of {@code queueSize} descriptors, with the driver accepting {@code features}. */
    BlkRig start(long features, int queueSize) throws IOException {
        queues = startQueues(features, handlers.length, queueSize);
        return this;
    }

    DriverQueue queue(int i) {
        return queues[i];
    }

    /** The virtio-blk configuration space as GET_CONFIG returns it. */
    ByteBuffer config() throws IOException {
        return ByteBuffer.wrap(frontend.getConfig(0, BlkDevice.CONFIG_SIZE)).order(ByteOrder.LITTLE_ENDIAN);
    }

    long capacity() throws IOException {
        return config().getLong(0);
    }

    // ---- guest memory ---------------------------------------------------------------------

    /** A fresh stretch of guest memory for one test's buffers. */
    Area area(int size) {
        return new Area(ram, size);
    }

    /**
     * Guest memory filled with a recognizable pattern, from which buffers are carved with gaps
     * between them: comparing the whole area before and after a request shows every byte the
     * device wrote, inside the request's buffers or not.
     */
    static final class Area {
        static final int GAP = 64;
        private final GuestRam ram;
        private final long gpa;
        private final int size;
        private int next = GAP;
        private byte[] want;

        Area(GuestRam ram, int size) {
            this.ram = ram;
            this.gpa = ram.allocate(size, 4096);
            this.size = size;
            byte[] fill = new byte[size];
            for (int i = 0; i < size; i++) {
                fill[i] = (byte) (0xA5 ^ (i * 13) ^ (i >>> 8));
            }
            write(gpa, fill);
        }

        /** {@code length} bytes of pattern, aligned to 8, GAP bytes after the previous buffer. */
        long room(int length) {
            long at = gpa + next;
            next += (length + GAP + 7) & ~7;
            if (next > size) {
                throw new IllegalStateException("area of " + size + " bytes exhausted");
            }
            return at;
        }

        long put(byte[] data) {
            long at = room(data.length);
            write(at, data);
            return at;
        }

        /** A virtio-blk request header: type, reserved 0, sector. */
        long header(int type, long sector) {
            return put(headerBytes(type, sector));
        }

        /** One status byte, preset to {@link #UNWRITTEN}. */
        long status() {
            return put(new byte[] {UNWRITTEN});
        }

        /** Discard / write-zeroes ranges: sector, sector count, flags per range. */
        long ranges(long[]... ranges) {
            return put(rangeBytes(ranges));
        }

        byte[] read(long at, int length) {
            return ram.at(at, length).toArray(ValueLayout.JAVA_BYTE);
        }

        void write(long at, byte[] data) {
            MemorySegment.copy(data, 0, ram.at(at, data.length), ValueLayout.JAVA_BYTE, 0, data.length);
        }

        /** Remembers the area's bytes as they are now; from here on nothing is expected to change. */
        void snapshot() {
            want = read(gpa, size);
        }

        /** The bytes at {@code at} are expected to hold {@code bytes} (the device writes them). */
        void expect(long at, byte[] bytes) {
            System.arraycopy(bytes, 0, want, (int) (at - gpa), bytes.length);
        }

        void expectStatus(long at, int status) {
            expect(at, new byte[] {(byte) status});
        }

        /** Asserts that since {@link #snapshot()} exactly the expected bytes changed, and as expected. */
        void assertAsExpected() {
            assertArrayEquals(want, read(gpa, size), "guest memory differs from what the request may write");
        }
    }

    static byte[] headerBytes(int type, long sector) {
        return ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putInt(type).putInt(0).putLong(sector).array();
    }

    static byte[] rangeBytes(long[]... ranges) {
        ByteBuffer b = ByteBuffer.allocate(16 * ranges.length).order(ByteOrder.LITTLE_ENDIAN);
        for (long[] r : ranges) {
            b.putLong(r[0]).putInt((int) r[1]).putInt((int) r[2]);
        }
        return b.array();
    }

    /** {@code length} bytes that differ with {@code seed}. */
    static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (seed * 131 + i * 7 + (i >>> 9) * 3 + 1);
        }
        return b;
    }

    // ---- requests -------------------------------------------------------------------------

    /** How the device completed one request: the used element and the status byte it left. */
    record Completion(int usedLength, int status) {}

    /** Posts {@code buffers} as one chain on queue {@code q}, kicks and waits for its completion. */
    Completion run(int q, Buffer... buffers) {
        DriverQueue dq = queues[q];
        return await(dq, dq.post(buffers), buffers);
    }

    Completion run(Buffer... buffers) {
        return run(0, buffers);
    }

    /** As {@link #run} with the buffers in an indirect table. */
    Completion runIndirect(int q, Buffer... buffers) {
        DriverQueue dq = queues[q];
        int head = dq.indirectChain(buffers);
        dq.makeAvailable(head);
        dq.kick();
        return await(dq, head, buffers);
    }

    private Completion await(DriverQueue dq, int head, Buffer[] buffers) {
        Used used = dq.awaitUsed(USED_TIMEOUT);
        assertNotNull(used, "no completion within " + USED_TIMEOUT + " on queue " + dq.index());
        assertEquals(head, used.id(), "the used element names another chain");
        return new Completion(used.length(), statusOf(buffers));
    }

    /** Posts {@code buffers} as one chain on queue {@code q} and kicks, without waiting; returns the head. */
    int post(int q, Buffer... buffers) {
        return queues[q].post(buffers);
    }

    /**
     * Waits for {@code count} completions on queue {@code q}, in whatever order the device
     * finishes them; returns the used length of each, by head.
     */
    Map<Integer, Integer> awaitAll(int q, int count) {
        Map<Integer, Integer> done = new HashMap<>();
        for (int i = 0; i < count; i++) {
            Used used = queues[q].awaitUsed(USED_TIMEOUT);
            assertNotNull(used, "only " + i + " of " + count + " completions on queue " + q + " within " + USED_TIMEOUT);
            assertNull(done.put(used.id(), used.length()), "chain " + used.id() + " completed twice");
        }
        return done;
    }

    /** The last byte of the last non-empty writable buffer, or -1 without one. */
    int statusOf(Buffer... buffers) {
        for (int i = buffers.length - 1; i >= 0; i--) {
            if (buffers[i].writable() && buffers[i].length() > 0) {
                return Byte.toUnsignedInt(ram.at(buffers[i].gpa() + buffers[i].length() - 1, 1).get(ValueLayout.JAVA_BYTE, 0));
            }
        }
        return -1;
    }

    /** Reads {@code length} bytes at {@code sector} through queue {@code q}; asserts OK and returns them. */
    byte[] read(int q, long sector, int length) {
        Area a = area(length + 512);
        long header = a.header(IN, sector);
        long data = a.room(length);
        long status = a.status();
        Completion c = run(q, Buffer.readable(header, 16), Buffer.writable(data, length), Buffer.writable(status, 1));
        assertEquals(new Completion(length + 1, OK), c, "read of " + length + " bytes at sector " + sector);
        return a.read(data, length);
    }

    /** A read or write of {@code length} bytes at {@code sector} on queue {@code q}, whatever its outcome. */
    Completion transfer(int q, int type, long sector, int length) {
        Area a = area(length + 512);
        long header = a.header(type, sector);
        long data = type == IN ? a.room(length) : a.put(pattern(length, (int) sector));
        long status = a.status();
        return run(q, Buffer.readable(header, 16), new Buffer(data, length, type == IN), Buffer.writable(status, 1));
    }

    /** Writes {@code data} at {@code sector} through queue {@code q}; asserts OK. */
    void write(int q, long sector, byte[] data) {
        Area a = area(data.length + 512);
        long header = a.header(OUT, sector);
        long at = a.put(data);
        long status = a.status();
        Completion c = run(q, Buffer.readable(header, 16), Buffer.readable(at, data.length), Buffer.writable(status, 1));
        assertEquals(new Completion(1, OK), c, "write of " + data.length + " bytes at sector " + sector);
    }

    /** Sends a request without data (FLUSH, unknown types); returns its completion. */
    Completion command(int q, int type, long sector) {
        Area a = area(512);
        long header = a.header(type, sector);
        long status = a.status();
        return run(q, Buffer.readable(header, 16), Buffer.writable(status, 1));
    }

    /** Sends DISCARD or WRITE_ZEROES with {@code ranges}; returns its completion. */
    Completion ranges(int type, long[]... ranges) {
        Area a = area(16 * ranges.length + 512);
        long header = a.header(type, 0);
        long at = a.ranges(ranges);
        long status = a.status();
        return run(0, Buffer.readable(header, 16), Buffer.readable(at, 16 * ranges.length), Buffer.writable(status, 1));
    }

    // ---- teardown -------------------------------------------------------------------------

    /** Closes the rig (see {@link DeviceRig#close()}), then the store. */
    @Override
    public void close() throws IOException {
        try {
            super.close();
        } finally {
            store.close();
        }
    }

    /** The device as the backend sees it, keeping hold of the queue handlers so tests can read their counters. */
    private record Watched(BlkDevice device, BlkQueueHandler[] handlers) implements VirtioDevice {
        @Override
        public int deviceType() {
            return device.deviceType();
        }

        @Override
        public int queueCount() {
            return device.queueCount();
        }

        @Override
        public int maxQueueSize() {
            return device.maxQueueSize();
        }

        @Override
        public long features() {
            return device.features();
        }

        @Override
        public long refusedFeatures() {
            return device.refusedFeatures();
        }

        @Override
        public void bind(DeviceContext context) {
            device.bind(context);
        }

        @Override
        public void featuresAcked(long features) {
            device.featuresAcked(features);
        }

        @Override
        public long protocolFeatures() {
            return device.protocolFeatures();
        }

        @Override
        public byte[] config() {
            return device.config();
        }

        @Override
        public boolean writeConfig(int offset, byte[] data) {
            return device.writeConfig(offset, data);
        }

        @Override
        public void reset() {
            device.reset();
        }

        @Override
        public int[][] queueSets() {
            return device.queueSets();
        }

        @Override
        public QueueHandler handler(int index) {
            BlkQueueHandler h = (BlkQueueHandler) device.handler(index);
            handlers[index] = h;
            return h;
        }
    }
}
