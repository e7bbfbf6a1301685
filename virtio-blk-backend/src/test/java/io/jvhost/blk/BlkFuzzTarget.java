package io.jvhost.blk;

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
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static io.jvhost.blk.BlkRig.DISCARD;
import static io.jvhost.blk.BlkRig.FLUSH;
import static io.jvhost.blk.BlkRig.GET_ID;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.WRITE_ZEROES;

/**
 * The virtio-blk request parser of a real {@link BlkDevice} on a RAM disk, served over a socket:
 * an input becomes up to eight requests posted at once on queue 0, each a chain (direct or
 * indirect) of a header (any type, any sector, any length, split or not), data buffers of any
 * number, length and direction, discard / write-zeroes ranges, and a status buffer, at addresses
 * in guest RAM, past its end, near 2^64 or on the rings themselves.
 *
 * <p>A failure is an exception escaping the poller (each would be, e.g., an access outside a
 * guest-memory segment), a poller thread dying, a request never completed, or a used length
 * larger than the chain's writable buffers. Guest RAM is 32 MiB; everything above is unmapped.
 */
public final class BlkFuzzTarget implements FuzzTarget {
    static final long DISK = 1 << 20, CAPACITY = DISK / 512;
    static final int AREA = 24 << 20, QUEUE_SIZE = 256;
    private static final Duration COMPLETION_TIMEOUT = Duration.ofSeconds(5);
    private static final int[] TYPES = {IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES, IN, OUT, 2, 3, 12, 0xFFFF_FFFF,
            0x8000_0000, 5, 14, 9};
    private static final long[] SECTORS = {0, 1, CAPACITY - 1, CAPACITY, CAPACITY + 1, CAPACITY - 8, 7, Long.MAX_VALUE,
            -1, 1L << 55, (1L << 54) - 1, 2047, 8, CAPACITY - 128, Long.MIN_VALUE, 0x1_0000_0000L};
    private static final int[] DATA_LENGTHS = {512, 4096, 1024, 0, 1, 511, 513, 65536, 0x7FFF_FFFF, 0x8000_0000,
            0xFFFF_FFFF, 16, 1 << 20, (int) DISK, 2048, 8192, 3 * 512, 0x10_0000 + 512, 32, 48, 15, 17, 4095, 4097};

    private BlkRig rig;
    private DriverQueue q;
    private long ramSize;
    private long area;
    private BackendHealth health;
    /**
     * Whether this input gave the device a buffer over the rings (below the area): its writes may
     * then rewrite chains not yet parsed, the avail index (the queue latches broken) or the used
     * ring (garbage completions). The guest's own doing: only the fault checks hold then, and the
     * device is replaced for the next input.
     */
    private boolean exposed;

    public BlkFuzzTarget() throws Exception {
        open();
    }

    private void open() throws Exception {
        BlkRig r = BlkRig.serve(new RamStore(DISK), 1);
        rig = r.start(r.offered, QUEUE_SIZE); // everything offered: discard, write-zeroes, indirect, event idx
        q = rig.queue(0);
        ramSize = rig.ram.size();
        area = rig.ram.allocate(AREA, 4096);
        health = BackendHealth.of(rig.backend);
    }

    @Override
    public String name() {
        return "blk";
    }

    @Override
    public int maxLength() {
        return 2048;
    }

    /** One buffer of a chain as the driver describes it. */
    private record Buf(long gpa, int length, boolean writable) {}

    /** The type in the header of the request being built, for the behaviour it reaches. */
    private int lastType;

    @Override
    public void run(byte[] input, Features features) throws Exception {
        FuzzInput in = new FuzzInput(input);
        exposed = false;
        long[] next = {area}; // bump allocator in the area, fresh for each input
        int slot = 0;
        List<Integer> heads = new ArrayList<>();
        Map<Integer, Long> writableOf = new HashMap<>();
        Map<Integer, String> typeOf = new HashMap<>();
        Map<Integer, Long> statusOf = new HashMap<>();
        List<String> posted = new ArrayList<>();
        long rejectedBefore = rig.backend.queue(0).counters().chainsRejected();
        int chains = 1 + in.below(8);
        for (int c = 0; c < chains && slot < QUEUE_SIZE - 16; c++) {
            List<Buf> bufs = request(in, next);
            long writable = 0;
            for (Buf b : bufs) {
                writable += b.writable() ? Integer.toUnsignedLong(b.length()) : 0;
                exposed |= b.length() != 0 && Long.compareUnsigned(b.gpa(), area) < 0
                        && b.gpa() + Integer.toUnsignedLong(b.length()) > q.descHva() - GuestRam.HVA_BASE;
            }
            int head;
            if (in.below(4) == 3) { // indirect
                long table = alloc(next, 16L * bufs.size(), 16);
                for (int i = 0; i < bufs.size() && table < ramSize; i++) {
                    Buf b = bufs.get(i);
                    q.writeIndirect(table, i, b.gpa(), b.length(), (b.writable() ? DriverQueue.F_WRITE : 0)
                            | (i + 1 < bufs.size() ? DriverQueue.F_NEXT : 0), i + 1);
                }
                head = slot++;
                q.writeDescriptor(head, table, 16 * bufs.size(), DriverQueue.F_INDIRECT, 0);
            } else {
                head = slot;
                for (int i = 0; i < bufs.size(); i++) {
                    Buf b = bufs.get(i);
                    q.writeDescriptor(slot, b.gpa(), b.length(), (b.writable() ? DriverQueue.F_WRITE : 0)
                            | (i + 1 < bufs.size() ? DriverQueue.F_NEXT : 0), slot + 1);
                    slot++;
                }
            }
            if (in.below(16) == 15) {
                head = in.below(slot); // a head in the middle of another chain: they share descriptors
                writable = Long.MAX_VALUE; // whatever that tail holds
            }
            long status = statusByte(bufs);
            if (status >= 0) {
                rig.ram.at(status, 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
                statusOf.put(head, status);
            }
            typeOf.put(head, typeName(lastType));
            heads.add(head);
            posted.add(head + ": " + bufs);
            writableOf.merge(head, writable, Math::max);
            q.makeAvailable(head);
        }
        q.kick();
        for (int i = 0; i < heads.size(); i++) {
            Used u = awaitUsed();
            if (u == null) {
                health.check();
                if (exposed) {
                    features.hit("rings-overwritten");
                    reset();
                    return;
                }
                throw new AssertionError("only " + i + " of " + heads.size() + " requests completed within "
                        + COMPLETION_TIMEOUT + "; posted " + posted);
            }
            Long room = writableOf.get(u.id());
            if (exposed) {
                continue;
            }
            if (room == null) {
                throw new AssertionError("used element names " + u.id() + ", not a posted head " + heads);
            }
            if (Integer.toUnsignedLong(u.length()) > room) {
                throw new AssertionError("request " + u.id() + " completed with " + Integer.toUnsignedLong(u.length())
                        + " bytes written into " + room + " writable bytes; posted " + posted);
            }
            Long status = statusOf.get(u.id());
            features.hit("type-" + typeOf.get(u.id()) + "-used-" + (u.length() == 0 ? "0" : "n") + "-status-"
                    + (status == null ? "none" : rig.ram.at(status, 1).get(ValueLayout.JAVA_BYTE, 0)));
        }
        health.check();
        if (exposed) {
            features.hit("rings-exposed");
            reset(); // whatever the device wrote over the rings, the next input starts clean
            return;
        }
        if (rig.backend.queue(0).isBroken()) {
            throw new AssertionError("queue latched broken by well-formed ring traffic; posted " + posted);
        }
        if (rig.backend.queue(0).counters().chainsRejected() != rejectedBefore) {
            for (Map.Entry<ChainError, Long> e : rig.backend.queue(0).counters().rejectedByError().entrySet()) {
                features.hit("rejected", e.getKey());
            }
        }
        BlkQueueHandler h = rig.handlers[0];
        features.hit("malformed", Math.min(h.malformed, 1));
        features.hit("ioerrors", Math.min(h.ioErrors, 1));
        features.hit("unsupported", Math.min(h.unsupported, 1));
    }

    private static String typeName(int type) {
        return switch (type) {
            case IN -> "in";
            case OUT -> "out";
            case FLUSH -> "flush";
            case GET_ID -> "get-id";
            case DISCARD -> "discard";
            case WRITE_ZEROES -> "write-zeroes";
            default -> "other";
        };
    }

    /** Where the status byte is (the last byte of the last non-empty writable buffer) if in the area, else -1. */
    private long statusByte(List<Buf> bufs) {
        for (int i = bufs.size() - 1; i >= 0; i--) {
            Buf b = bufs.get(i);
            if (b.writable() && b.length() != 0) {
                long at = b.gpa() + Integer.toUnsignedLong(b.length()) - 1;
                return b.gpa() >= area && at < area + AREA && at >= b.gpa() ? at : -1;
            }
        }
        return -1;
    }

    /** The next used element; null after the timeout, or at once once the queue is broken. */
    private Used awaitUsed() {
        long deadline = System.nanoTime() + COMPLETION_TIMEOUT.toNanos();
        do {
            Used u = q.awaitUsed(Duration.ofMillis(20));
            if (u != null) {
                return u;
            }
        } while (System.nanoTime() < deadline && !rig.backend.queue(0).isBroken());
        return null;
    }

    /** A request's buffers: header, data or ranges, status; each part mostly plausible, sometimes not. */
    private List<Buf> request(FuzzInput in, long[] next) {
        List<Buf> bufs = new ArrayList<>();
        int type = in.choose(TYPES);
        lastType = type;
        long sector = in.choose(SECTORS);
        byte[] header = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putInt(type).putInt(in.below(4) == 3
                ? in.u32() : 0).putLong(sector).array();
        int headerLength = in.choose(16, 16, 16, 15, 0, 8, 17, 32, 4096, 1);
        long h = address(in, next, Math.max(16, headerLength));
        put(h, header);
        if (in.below(4) == 3 && headerLength > 1) { // header split over two buffers
            int cut = 1 + in.below(headerLength - 1);
            long second = address(in, next, headerLength - cut);
            put(second, java.util.Arrays.copyOfRange(header, Math.min(cut, 16), 16));
            bufs.add(new Buf(h, cut, false));
            bufs.add(new Buf(second, headerLength - cut, false));
        } else {
            bufs.add(new Buf(h, headerLength, in.below(16) == 15));
        }
        if (type == DISCARD || type == WRITE_ZEROES || in.below(8) == 7) {
            int ranges = in.choose(1, 2, 0, 32, 33, 3, 8, 1);
            ByteBuffer r = ByteBuffer.allocate(16 * Math.min(ranges & 0xFF, 64)).order(ByteOrder.LITTLE_ENDIAN);
            while (r.hasRemaining()) {
                r.putLong(in.choose(SECTORS)).putInt(in.choose(8, 1, 0, 2048, 0xFFFF_FFFF, 1 << 21, (1 << 21) + 1, 7))
                        .putInt(in.choose(0, 1, 2, 0xFFFF_FFFF));
            }
            int length = in.below(8) == 7 ? in.choose(DATA_LENGTHS) : r.capacity();
            long at = address(in, next, Math.max(r.capacity(), 16));
            put(at, r.array());
            bufs.add(new Buf(at, length, false));
        }
        int data = in.below(5);
        boolean toGuest = type == IN || type == GET_ID;
        for (int d = 0; d < data; d++) {
            int length = in.choose(DATA_LENGTHS);
            boolean writable = in.below(8) == 7 ? !toGuest : toGuest;
            bufs.add(new Buf(address(in, next, Integer.toUnsignedLong(length)), length, writable));
        }
        int statusLength = in.choose(1, 1, 1, 0, 2, 512, 16, 4096);
        bufs.add(new Buf(address(in, next, Math.max(1, Integer.toUnsignedLong(statusLength))), statusLength,
                in.below(16) != 15));
        if (in.below(16) == 15) {
            bufs.add(new Buf(address(in, next, 1), 0, true)); // an empty buffer after the status byte
        }
        if (in.below(8) == 7) {
            java.util.Collections.swap(bufs, in.below(bufs.size()), in.below(bufs.size()));
        }
        return bufs;
    }

    /** Where a buffer of {@code length} bytes goes: mostly fresh area space, sometimes somewhere hostile. */
    private long address(FuzzInput in, long[] next, long length) {
        return switch (in.below(16)) {
            case 10 -> ramSize - in.between(0, 64); // runs past the end of guest RAM
            case 11 -> ramSize + in.u16(); // unmapped
            case 12 -> -1L - in.u16(); // wraps at 2^64
            case 13 -> in.u64();
            case 14 -> GuestRam.HVA_BASE + area; // a frontend address, not a guest one
            case 15 -> { // the descriptor table (not past it, into the avail ring): a device write
                long at = 16L * in.below(16); // there rewrites chains not yet parsed
                if (length > 16L * QUEUE_SIZE - at) {
                    yield alloc(next, length, 8);
                }
                yield q.descHva() - GuestRam.HVA_BASE + at;
            }
            default -> alloc(next, length, in.below(4) == 3 ? 1 : 8);
        };
    }

    /**
     * Fresh area space: buffers of one input never overlap, so what the device writes into one
     * cannot change another request behind the oracle's back. A buffer that does not fit goes past
     * the end of guest RAM instead (refused like any unmapped one).
     */
    private long alloc(long[] next, long length, long align) {
        long at = (next[0] + align - 1) & -align;
        if (Long.compareUnsigned(length, area + AREA - at) > 0) {
            return ramSize + 4096;
        }
        next[0] = at + length;
        return at;
    }

    private void put(long gpa, byte[] bytes) {
        if (gpa >= area && gpa <= ramSize - bytes.length) {
            MemorySegment.copy(bytes, 0, rig.ram.at(gpa, bytes.length), ValueLayout.JAVA_BYTE, 0, bytes.length);
        }
    }

    @Override
    public void reset() throws Exception {
        close();
        open();
    }

    @Override
    public void close() throws Exception {
        rig.close();
    }
}
