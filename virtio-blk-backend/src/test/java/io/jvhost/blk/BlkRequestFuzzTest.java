package io.jvhost.blk;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.memory.MemoryMap;
import io.jvhost.core.memory.MemoryMap.RegionSpec;
import io.jvhost.core.ring.VirtQueue;
import io.jvhost.core.sys.Fd;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.GuestRam;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * Coverage-guided fuzzing (Jazzer) of the virtio-blk request parser: {@link BlkQueueHandler} takes
 * up to eight chains at once from a queue over 512 KiB of mapped guest memory (a memfd; the next
 * 512 KiB are a hole) and a 256 KiB {@link RamStore}. Each chain is a request header (any type and
 * sector, whole, split or short), readable data or discard / write-zeroes ranges (any sector,
 * count and flags), writable data, and a status buffer (one byte, longer, empty or missing), direct
 * or indirect, now and then with a buffer turned round or moved into the hole or near 2^64.
 * Features (DISCARD, WRITE_ZEROES) are acked or not. Pure: no socket, no poller thread.
 *
 * <p>A finding is any exception, a queue latched broken, a chain never completed or completed twice,
 * a used length beyond the chain's writable bytes, a status byte other than OK / IOERR / UNSUPP,
 * or a completed read or write whose bytes differ between guest and disk.
 *
 * <p>Kept inputs: {@code src/test/resources/io/jvhost/blk/BlkRequestFuzzTestInputs/}.
 */
class BlkRequestFuzzTest {
    static final long K = 1024, RAM = 1024 * K, MAPPED = 512 * K, DISK = 256 * K, CAPACITY = DISK / 512;
    static final int SIZE = 128, MAX_REQUESTS = 8;
    // virtio 1.2 §5.2.6, written out rather than taken from the code under test.
    static final int IN = 0, OUT = 1, FLUSH = 4, GET_ID = 8, DISCARD = 11, WRITE_ZEROES = 13;
    private static final int[] TYPES = {IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES};
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final byte UNWRITTEN = 0x7F;

    private static GuestRam ram;
    private static MemoryMap map;
    private static GuestMemory memory;
    private static RamStore store;
    private static BlkDevice device;
    private static BlkQueueHandler handler;
    private static DriverQueue driver;
    private static final VirtQueue QUEUE = new VirtQueue(0);
    private static long dataStart;
    private long next;

    @BeforeAll
    static void createDevice() throws Exception {
        ram = new GuestRam(RAM, MAPPED);
        map = new MemoryMap();
        map.replace(List.of(new RegionSpec(0, MAPPED, GuestRam.hva(0), 0)), new Fd[] {ram.fd().dup()});
        memory = map.current();
        driver = new DriverQueue(ram, 0, SIZE);
        dataStart = ram.allocate(4096, 4096);
        store = new RamStore(DISK);
        device = new BlkDevice(store, 1);
        handler = (BlkQueueHandler) device.handler(0);
    }

    @AfterAll
    static void close() {
        driver.close();
        map.close();
        ram.close();
        store.close();
    }

    /**
     * One chain as built: its buffers {gpa, length, writable}. What it asks is whatever its first 16
     * readable bytes say, as the device reads them: a short header buffer lets the data take its place.
     */
    private record Request(int head, List<long[]> buffers) {
        long writable() {
            long n = 0;
            for (long[] b : buffers) {
                n += b[2] != 0 ? b[1] : 0;
            }
            return n;
        }

        /** The request type as the device reads it, or -1 without 16 readable bytes in guest memory. */
        int type() {
            byte[] h = stream(this, false);
            return h.length < 16 ? -1 : MemorySegment.ofArray(h).get(U32, 0);
        }

        long sector() {
            byte[] h = stream(this, false);
            return h.length < 16 ? -1 : MemorySegment.ofArray(h).get(U64, 8);
        }

        boolean writes() {
            int t = type();
            return t == OUT || t == DISCARD || t == WRITE_ZEROES;
        }
    }

    @FuzzTest
    void shouldCompleteEveryRequestWithAStatusInsideItsBuffersWhateverTheChain(FuzzedDataProvider data) {
        next = dataStart;
        device.featuresAcked(data.consumeBoolean() ? device.features() : data.consumeLong() & device.features());
        int base = data.consumeInt(0, 3) == 0 ? data.consumeInt(0, 0xFFFF) : 0;
        driver.startAt(base);
        QUEUE.configure(SIZE, memory.translateHva(driver.descHva(), 16L * SIZE),
                memory.translateHva(driver.availHva(), 6 + 2L * SIZE), memory.translateHva(driver.usedHva(), 6 + 8L * SIZE),
                memory, base, VirtQueue.INDIRECT, -1);
        QUEUE.callFd(-1);
        handler.started(QUEUE); // this thread is the queue's poller
        int count = data.consumeInt(1, MAX_REQUESTS);
        List<Request> requests = new ArrayList<>();
        for (int r = 0; r < count; r++) {
            requests.add(build(data));
        }
        for (Request r : requests) {
            driver.makeAvailable(r.head());
        }
        for (int round = 0; round < 4 && driver.usedIdx() != ((base + count) & 0xFFFF); round++) {
            serve(handler, QUEUE);
        }
        check(requests, base, count);
    }

    // ---- adapter: the only call into the code under test ----

    /**
     * {@link BlkQueueHandler#process}: takes each chain from the queue ({@code VirtQueue.next()}), parses it
     * into a {@link BlockRequest} (header, data, status) walked with a {@code ChainCursor}, and runs it.
     */
    static int serve(BlkQueueHandler h, VirtQueue q) {
        return h.process(q, 64);
    }

    // ---- inputs ----

    private long allocate(long length) {
        long gpa = (next + 15) & ~15L;
        next = gpa + Math.max(length, 1);
        if (next > MAPPED) {
            throw new IllegalStateException("the input asked for more guest memory than the test has");
        }
        ram.at(gpa, length).fill((byte) 0); // nothing left from an earlier input: each one replays alone
        return gpa;
    }

    /** A buffer {gpa, length, writable}: in fresh guest memory, or now and then somewhere unmapped. */
    private long[] buffer(FuzzedDataProvider data, long length, boolean writable) {
        long gpa = allocate(length);
        if (data.consumeInt(0, 31) == 0) {
            gpa = switch (data.consumeInt(0, 2)) {
                case 0 -> MAPPED - length / 2; // across the end of the mapping
                case 1 -> MAPPED + data.consumeLong(0, RAM - MAPPED); // in the hole
                default -> -1L - data.consumeInt(0, 4096); // just below 2^64
            };
        }
        if (data.consumeInt(0, 31) == 0) {
            writable = !writable;
        }
        return new long[] {gpa, length, writable ? 1 : 0};
    }

    private static long dataLength(FuzzedDataProvider data) {
        return switch (data.consumeInt(0, 3)) {
            case 0 -> 512L * data.consumeInt(0, 16);
            case 1 -> data.consumeInt(0, 2048);
            case 2 -> 512;
            default -> 4096;
        };
    }

    private static long sector(FuzzedDataProvider data) {
        return switch (data.consumeInt(0, 3)) {
            case 0 -> data.consumeLong(0, CAPACITY + 2);
            case 1 -> CAPACITY - data.consumeInt(0, 16);
            case 2 -> data.consumeLong(0, 64);
            default -> data.consumeLong();
        };
    }

    private Request build(FuzzedDataProvider data) {
        int type = data.consumeInt(0, 7) == 0 ? data.consumeInt() : TYPES[data.consumeInt(0, TYPES.length - 1)];
        long sector = sector(data);
        List<long[]> buffers = new ArrayList<>();
        long headerGpa = allocate(16);
        MemorySegment header = ram.at(headerGpa, 16);
        header.set(U32, 0, type);
        header.set(U32, 4, data.consumeInt(0, 7) == 0 ? data.consumeInt() : 0);
        header.set(U64, 8, sector);
        switch (data.consumeInt(0, 5)) {
            case 0 -> { // split in two
                int at = data.consumeInt(1, 15);
                buffers.add(new long[] {headerGpa, at, 0});
                buffers.add(new long[] {headerGpa + at, 16 - at, 0});
            }
            case 1 -> buffers.add(new long[] {headerGpa, data.consumeInt(0, 15), 0}); // short
            default -> buffers.add(new long[] {headerGpa, 16, 0});
        }
        boolean ranges = type == DISCARD || type == WRITE_ZEROES;
        if (ranges && data.consumeInt(0, 7) != 0) {
            int n = data.consumeInt(0, 7) == 0 ? data.consumeInt(0, BlkDevice.MAX_DISCARD_SEG + 1) : data.consumeInt(1, 3);
            long length = 16L * n + (data.consumeInt(0, 7) == 0 ? data.consumeInt(1, 15) : 0);
            long[] b = buffer(data, length, false);
            if (Long.compareUnsigned(b[0], MAPPED) < 0 && b[0] + length <= MAPPED) {
                MemorySegment s = ram.at(b[0], length);
                for (int i = 0; i < n; i++) {
                    s.set(U64, 16L * i, sector(data));
                    s.set(U32, 16L * i + 8, data.consumeInt(0, 3) == 0 ? data.consumeInt() : data.consumeInt(0, 64));
                    s.set(U32, 16L * i + 12, data.consumeInt(0, 3) == 0 ? data.consumeInt() : data.consumeInt(0, 1));
                }
            }
            buffers.add(b);
        }
        int readable = type == OUT || data.consumeInt(0, 15) == 0 ? data.consumeInt(0, 3) : 0;
        for (int i = 0; i < readable; i++) {
            buffers.add(buffer(data, dataLength(data), false));
        }
        int writable = type == IN || type == GET_ID || data.consumeInt(0, 15) == 0 ? data.consumeInt(0, 3) : 0;
        for (int i = 0; i < writable; i++) {
            buffers.add(buffer(data, dataLength(data), true));
        }
        if (data.consumeInt(0, 15) != 0) {
            long length = data.consumeInt(0, 3) == 0 ? new long[] {0, 2, 16, 512}[data.consumeInt(0, 3)] : 1;
            buffers.add(buffer(data, length, true));
        }
        for (long[] b : buffers) { // the guest leaves a mark where the device may write
            if (b[2] != 0 && b[1] > 0 && Long.compareUnsigned(b[0], MAPPED) < 0 && b[0] + b[1] <= MAPPED) {
                ram.at(b[0] + b[1] - 1, 1).set(JAVA_BYTE, 0, UNWRITTEN);
            }
        }
        int head;
        if (data.consumeBoolean()) {
            long table = allocate(16L * buffers.size());
            for (int i = 0; i < buffers.size(); i++) {
                long[] b = buffers.get(i);
                driver.writeIndirect(table, i, b[0], (int) b[1],
                        (b[2] != 0 ? DriverQueue.F_WRITE : 0) | (i + 1 < buffers.size() ? DriverQueue.F_NEXT : 0), i + 1);
            }
            head = driver.chain(new DriverQueue.Buffer(table, 16 * buffers.size(), false));
            driver.writeDescriptor(head, table, 16 * buffers.size(), DriverQueue.F_INDIRECT, 0);
        } else {
            DriverQueue.Buffer[] chain = new DriverQueue.Buffer[buffers.size()];
            for (int i = 0; i < chain.length; i++) {
                long[] b = buffers.get(i);
                chain[i] = new DriverQueue.Buffer(b[0], (int) b[1], b[2] != 0);
            }
            head = driver.chain(chain);
        }
        return new Request(head, buffers);
    }

    // ---- oracle ----

    private void check(List<Request> requests, int base, int count) {
        if (QUEUE.isBroken()) {
            throw new AssertionError("the queue latched broken on well-formed rings");
        }
        int done = (driver.usedIdx() - base) & 0xFFFF;
        if (done != count) {
            throw new AssertionError(count + " requests made available, " + done + " completed");
        }
        boolean[] seen = new boolean[requests.size()];
        int writers = 0;
        for (Request r : requests) {
            writers += r.writes() ? 1 : 0;
        }
        for (int i = 0; i < count; i++) {
            Used u = driver.awaitUsed(Duration.ZERO);
            int k = 0;
            while (k < requests.size() && (requests.get(k).head() != u.id() || seen[k])) {
                k++;
            }
            if (k == requests.size()) {
                throw new AssertionError("used element for head " + u.id() + ", which is not a request in flight");
            }
            seen[k] = true;
            Request r = requests.get(k);
            long length = Integer.toUnsignedLong(u.length());
            if (length > r.writable()) {
                throw new AssertionError("used length " + length + " beyond the " + r.writable() + " writable bytes of " + describe(r));
            }
            if (length > 0) {
                checkStatus(r, length, writers);
            }
        }
    }

    private void checkStatus(Request r, long length, int writers) {
        long[] last = null;
        for (long[] b : r.buffers()) {
            if (b[2] != 0 && b[1] > 0) {
                last = b;
            }
        }
        if (last == null) {
            throw new AssertionError("used length " + length + " for a chain without a writable byte: " + describe(r));
        }
        int status = ram.at(last[0] + last[1] - 1, 1).get(JAVA_BYTE, 0);
        if (status != 0 && status != 1 && status != 2) {
            throw new AssertionError("status byte " + status + " for " + describe(r));
        }
        if (status != 0) {
            return;
        }
        // A completed READ put the disk's bytes into the writable buffers; a completed WRITE put the
        // readable ones (after the header) on the disk. Checked when no other request changed the disk.
        boolean read = r.type() == IN && writers == 0, write = r.type() == OUT && writers == 1;
        if (!read && !write) {
            return;
        }
        byte[] guest = stream(r, read);
        int skip = read ? 0 : 16;
        long n = read ? length - 1 : guest.length - skip;
        if (n > 0 && (r.sector() * 512 + n > DISK || MemorySegment.mismatch(MemorySegment.ofArray(guest), skip, skip + n,
                store.contents(), r.sector() * 512, r.sector() * 512 + n) != -1)) {
            throw new AssertionError((read ? "read" : "write") + " of " + n + " bytes (used " + length + ") differs between guest and disk: " + describe(r));
        }
    }

    /** The bytes of the chain's writable (or readable) buffers, in order. */
    private static byte[] stream(Request r, boolean writable) {
        long total = 0;
        for (long[] b : r.buffers()) {
            if ((b[2] != 0) == writable && Long.compareUnsigned(b[0], MAPPED) < 0 && b[0] + b[1] <= MAPPED) {
                total += b[1];
            }
        }
        byte[] out = new byte[(int) total];
        int at = 0;
        for (long[] b : r.buffers()) {
            if ((b[2] != 0) == writable && b[1] > 0 && Long.compareUnsigned(b[0], MAPPED) < 0 && b[0] + b[1] <= MAPPED) {
                MemorySegment.copy(ram.at(b[0], b[1]), JAVA_BYTE, 0, out, at, (int) b[1]);
                at += (int) b[1];
            }
        }
        return out;
    }

    private static String describe(Request r) {
        StringBuilder b = new StringBuilder("type ").append(r.type()).append(" sector ").append(r.sector()).append(" [");
        for (long[] x : r.buffers()) {
            b.append(String.format(" %s0x%x+%d", x[2] != 0 ? "W" : "R", x[0], x[1]));
        }
        return b.append(" ]").toString();
    }
}
