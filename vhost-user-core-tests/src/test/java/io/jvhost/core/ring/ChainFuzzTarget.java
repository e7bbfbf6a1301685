package io.jvhost.core.ring;

import io.jvhost.testkit.fuzz.Features;
import io.jvhost.testkit.fuzz.FuzzInput;
import io.jvhost.testkit.fuzz.FuzzTarget;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;

/**
 * The descriptor-chain walker against whatever a driver may write: an input becomes a queue (size,
 * EVENT_IDX, INDIRECT_DESC, starting index near the 16-bit wrap) and up to four rounds of
 * descriptors, indirect tables (aligned or not, in a hole, at a region's end), avail entries and
 * avail index moves, drained by a device that reads and writes every buffer it is handed.
 *
 * <p>Guest RAM is 1 MiB in four 256 KiB regions, the third left out of the memory table, so that
 * addresses in a hole, past the end, across a region boundary and near 2^64 all exist. A failure is
 * any exception from the queue or a chain, a buffer outside the mapped regions, a chain that made
 * available and not completed (unless the ring latched broken), more buffers than the queue size, or
 * a {@link ChainCursor} walk that leaves guest memory or misses a byte.
 */
public final class ChainFuzzTarget implements FuzzTarget {
    static final long RAM = 1 << 20, QUARTER = RAM / 4;
    /** Regions 0, 1 and 3 are mapped; [512 KiB, 768 KiB) is a hole. */
    static final long[] MAPPED_START = {0, QUARTER, 3 * QUARTER}, MAPPED_END = {QUARTER, 2 * QUARTER, RAM};
    static final long DATA = 0x10000, TABLES = 0x30000, HIGH = 3 * QUARTER + 0x1000;
    private static final int[] SIZES = {8, 4, 16, 256, 1, 2};
    private static final long[] BOUNDARIES = {QUARTER, 2 * QUARTER, 3 * QUARTER, RAM};
    private static final int MAX_TOUCH = 1 << 17;
    private final MemorySegment scratch = Arena.ofAuto().allocate(MAX_TOUCH);
    private final ChainCursor cursor = new ChainCursor();
    private final BufferBurst burst = new BufferBurst();
    private static final long[] NO_FRAMES = new long[BufferBurst.MAX];

    @Override
    public String name() {
        return "chains";
    }

    @Override
    public int maxLength() {
        return 1024;
    }

    @Override
    public void run(byte[] input, Features features) throws Exception {
        FuzzInput in = new FuzzInput(input);
        int size = SIZES[in.below(SIZES.length)];
        boolean eventIdx = in.bool();
        boolean indirect = !in.bool();
        int base = (int) in.choose(0, 0xFFFF, 0xFFFE, 0xFFF8, 1, 0x8000) & 0xFFFF;
        try (RingFixture f = new RingFixture(size, RAM, new boolean[] {false, false, true, false},
                QUARTER, 2 * QUARTER, 3 * QUARTER)) {
            f.driver.startAt(base);
            f.configure(base, eventIdx, indirect);
            int rounds = 1 + in.below(4);
            for (int round = 0; round < rounds && !f.queue.isBroken(); round++) {
                runRound(f, in, size, features);
            }
            if (((f.queue.position().lastAvailIdx() - base) & 0xFFFF) != 0 && f.queue.position().lastAvailIdx() < base) {
                features.hit("index-wrapped");
            }
            for (Map.Entry<ChainError, Long> e : f.queue.counters().rejectedByError().entrySet()) {
                features.hit("rejected", e.getKey());
            }
            if (f.queue.isBroken()) {
                features.hit("ring-broken");
            }
        }
    }

    private void runRound(RingFixture f, FuzzInput in, int size, Features features) {
        int descriptors = in.below(2 * size + 1);
        for (int d = 0; d < descriptors; d++) {
            int i = in.below(size);
            f.driver.writeDescriptor(i, address(in, f), length(in), flags(in), next(in, size));
        }
        int tables = in.below(3);
        for (int t = 0; t < tables; t++) {
            long at = table(in);
            int entries = in.below(size + 2);
            for (int e = 0; e < entries; e++) {
                long gpa = at + 16L * e;
                if (inMapped(gpa, 16)) {
                    f.writeIndirect(gpa, 0, address(in, f), length(in), flags(in), next(in, size + 2));
                }
            }
        }
        int heads = in.below(size + 1);
        for (int h = 0; h < heads; h++) {
            f.driver.makeAvailable(in.below(8) == 7 ? in.u16() : in.below(size));
        }
        boolean jump = in.below(16) == 15;
        if (jump) {
            f.driver.setAvailIdx(in.u16());
        }
        int usedBefore = f.queue.position().usedIdx();
        int availBefore = f.queue.position().lastAvailIdx();
        long rejectedBefore = f.queue.counters().chainsRejected();
        int guard = 0;
        int mode = in.below(3); // chain by chain, or bursts of one-buffer chains to write or to read first
        while (true) {
            if (mode > 0) {
                int n = burst(f, in, size, mode == 1, features, java.util.List.of());
                if (n > 0) {
                    guard += n;
                    if (guard > 2 * size + 1) {
                        throw new AssertionError("bursts took more chains than were made available");
                    }
                    continue;
                }
            }
            DescriptorChain c = f.queue.next();
            if (c == null) {
                break;
            }
            if (++guard > 2 * size + 1) {
                throw new AssertionError("the queue handed out more chains than were made available");
            }
            features.hit(c.count() > 1 ? "served-chain" : "served-single");
            f.queue.complete(c, serve(c, size));
        }
        f.queue.publish();
        if (!f.queue.isBroken()) {
            // The index in the ring, not the driver's: buffers may point at the rings themselves,
            // so the device's own writes can move it (hostile, but the device must cope).
            int availIdx = Short.toUnsignedInt(f.ram.at(f.availGpa + 2, 2).get(RingFixture.U16, 0));
            int offered = (availIdx - availBefore) & 0xFFFF;
            int taken = (f.queue.position().lastAvailIdx() - availBefore) & 0xFFFF;
            int completed = (f.queue.position().usedIdx() - usedBefore) & 0xFFFF;
            if (taken != offered || completed != taken) {
                throw new AssertionError("made available " + offered + ", taken " + taken + ", completed " + completed
                        + " (rejected " + (f.queue.counters().chainsRejected() - rejectedBefore) + "; size " + size + ")");
            }
            if (f.driver.usedIdx() != f.queue.position().usedIdx()) {
                throw new AssertionError("used index published " + f.driver.usedIdx() + ", device at " + f.queue.position().usedIdx());
            }
        }
    }

    /**
     * Takes a burst of one-buffer chains (writable or readable), checks every buffer lies inside
     * guest memory, is as long as asked, and (packed) that no id comes twice or is among
     * {@code inFlight}, touches its first and last
     * byte as a device would, then completes them, sometimes giving the last ones back; returns how
     * many were completed.
     */
    int burst(RingFixture f, FuzzInput in, int size, boolean writable, Features features,
              java.util.Collection<Integer> inFlight) {
        int headroom = in.below(4) == 3 ? 16 : 0;
        int max = 1 + in.below(BufferBurst.MAX);
        int n = writable ? burst.takeWritable(f.queue, max, headroom, NO_FRAMES, 0)
                : burst.takeReadable(f.queue, max, headroom);
        if (n == 0) {
            return 0;
        }
        java.util.BitSet ids = new java.util.BitSet();
        for (int i = 0; i < n; i++) {
            MemorySegment m = burst.memory(i);
            long at = burst.offset(i), len = burst.length(i);
            // A split ring's driver may make a head available twice (its own bug; next() takes it twice too).
            boolean twice = f.isPacked() && (ids.get(burst.ids[i]) || inFlight.contains(burst.ids[i]));
            if (len < Math.max(1, headroom) || at < 0 || at + len > m.byteSize() || burst.ids[i] >= size || twice) {
                throw new AssertionError("burst entry " + i + " of " + n + ": id " + burst.ids[i] + ", " + len + " bytes at "
                        + at + " of a region of " + m.byteSize());
            }
            ids.set(burst.ids[i]);
            if (writable) {
                m.set(ValueLayout.JAVA_BYTE, at, (byte) 1);
                m.set(ValueLayout.JAVA_BYTE, at + len - 1, (byte) 1);
                burst.written(i, len);
            } else {
                m.get(ValueLayout.JAVA_BYTE, at);
                m.get(ValueLayout.JAVA_BYTE, at + len - 1);
            }
        }
        int keep = in.below(4) == 3 ? in.below(n + 1) : n;
        burst.complete(keep);
        features.hit(writable ? "burst-writable" : "burst-readable");
        if (keep < n) {
            features.hit("burst-gave-back");
        }
        return keep;
    }

    /** Reads every readable and writes every writable byte as a device would; returns the bytes written. */
    long serve(DescriptorChain c, int size) {
        if (c.count() < 1 || c.count() > size) {
            throw new AssertionError(c.count() + " buffers in a queue of " + size + ": " + c);
        }
        long readable = 0, writable = 0;
        for (int i = 0; i < c.count(); i++) {
            long gpa = c.gpa(i), n = Integer.toUnsignedLong(c.length(i));
            if (c.length(i) < 0 || (n > 0 && !inMapped(gpa, n))) {
                throw new AssertionError("buffer " + i + " at 0x" + Long.toHexString(gpa) + " +" + n
                        + " is not inside one mapped region: " + c);
            }
            if (i > 0 && c.isWritable(i - 1) && !c.isWritable(i)) {
                throw new AssertionError("readable buffer after a writable one: " + c);
            }
            MemorySegment s = c.segment(i);
            if (s.byteSize() != n) {
                throw new AssertionError("segment of " + s.byteSize() + " bytes for a buffer of " + n);
            }
            if (n > 0) {
                s.get(ValueLayout.JAVA_BYTE, 0);
                s.get(ValueLayout.JAVA_BYTE, n - 1);
            }
            if (c.isWritable(i)) {
                writable += n;
            } else {
                readable += n;
            }
        }
        if (readable != c.readableLength() || writable != c.writableLength()) {
            throw new AssertionError("lengths " + c.readableLength() + "/" + c.writableLength() + ", buffers say "
                    + readable + "/" + writable);
        }
        long walked = 0;
        for (ChainCursor b = cursor.all(c); b.next(Long.MAX_VALUE); walked += b.length()) {
            if (!inMapped(b.gpa(), b.length()) || b.memory().byteSize() < b.offset() + b.length()) {
                throw new AssertionError("cursor piece at 0x" + Long.toHexString(b.gpa()) + " +" + b.length()
                        + " is not inside one mapped region: " + c);
            }
        }
        if (walked != readable + writable) {
            throw new AssertionError("the cursor walked " + walked + " bytes of " + (readable + writable) + ": " + c);
        }
        long r = c.read(0, scratch, 0, Math.min(readable, MAX_TOUCH));
        if (r != Math.min(readable, MAX_TOUCH)) {
            throw new AssertionError("read " + r + " of " + readable + " readable bytes: " + c);
        }
        return c.write(scratch, 0, 0, Math.min(writable, MAX_TOUCH));
    }

    static boolean inMapped(long gpa, long length) {
        for (int r = 0; r < MAPPED_START.length; r++) {
            if (Long.compareUnsigned(gpa, MAPPED_START[r]) >= 0 && length <= MAPPED_END[r] - MAPPED_START[r]
                    && Long.compareUnsigned(gpa - MAPPED_START[r], MAPPED_END[r] - MAPPED_START[r] - length) <= 0) {
                return true;
            }
        }
        return false;
    }

    static long address(FuzzInput in, RingFixture f) {
        return switch (in.below(10)) {
            case 0, 1, 2 -> DATA + in.u16();
            case 3 -> BOUNDARIES[in.below(BOUNDARIES.length)] + (byte) in.u8(); // either side of a boundary or the end
            case 4 -> -1L - in.u16(); // the last 64 KiB below 2^64: length overflows past it
            case 5 -> TABLES + 16L * in.below(64) + in.pick(0, 0, 3, 8);
            case 6 -> HIGH + in.u16();
            case 7 -> 2 * QUARTER + in.u16(); // in the hole
            case 8 -> in.pick(f.descGpa, f.availGpa, f.usedGpa, 0L);
            default -> in.u64();
        };
    }

    static int length(FuzzInput in) {
        return in.choose(16, 1, 0, 64, 512, 4096, 32, 48, 1500, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, (int) QUARTER,
                (int) QUARTER + 1, 0x1_0000, 0xFFF0, 256, 160, 17, 8, 2048, 100, 0x10, 0x20, 1 << 20, -16, 12, 128, 4112,
                0x4000_0000, 0x100, 6);
    }

    private static int flags(FuzzInput in) {
        return in.choose(RingFixture.F_NEXT, 0, RingFixture.F_WRITE, RingFixture.F_NEXT | RingFixture.F_WRITE,
                RingFixture.F_INDIRECT, RingFixture.F_INDIRECT | RingFixture.F_NEXT,
                RingFixture.F_INDIRECT | RingFixture.F_WRITE, 0xFFFF) & 0xFFFF;
    }

    private static int next(FuzzInput in, int size) {
        return in.below(8) == 7 ? in.u16() : in.below(size);
    }

    static long table(FuzzInput in) {
        return switch (in.below(6)) {
            case 0, 1, 2 -> TABLES + 0x400L * in.below(8) + in.pick(0, 0, 0, 1, 8);
            case 3 -> 2 * QUARTER - 16L * in.below(4); // runs into the hole
            case 4 -> RAM - 16L * in.below(4); // runs past the end
            default -> QUARTER - 16L * in.below(4); // crosses into the next region
        };
    }

    @Override
    public void reset() {
        // Every input builds its own queue and memory: nothing to reset.
    }

    @Override
    public void close() {
    }
}
