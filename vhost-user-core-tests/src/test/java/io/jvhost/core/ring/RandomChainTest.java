package io.jvhost.core.ring;

import io.jvhost.core.memory.InvalidMemoryException;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.math.BigInteger;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.Tuple;
import net.jqwik.api.statistics.Statistics;
import net.jqwik.api.lifecycle.AfterContainer;

import static io.jvhost.core.ring.RingFixture.F_INDIRECT;
import static io.jvhost.core.ring.RingFixture.F_NEXT;
import static io.jvhost.core.ring.RingFixture.F_WRITE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Random descriptor tables, indirect tables and avail rings, hostile or not. Whatever the driver
 * writes, {@link VirtQueue#next()} never throws, every buffer it hands out lies inside one region
 * of guest memory, every chain made available is either served (with exactly the buffers a
 * straightforward reading of the spec finds) or completed with length 0, and the queue latches
 * broken exactly when a head is out of range or the avail index jumps too far.
 */
class RandomChainTest {
    private static final int SIZE = 8;
    private static final long MIB = 1 << 20;
    private static final long RAM = 2 * MIB;
    private static final int MAX_TABLE = SIZE + 2;
    // Indirect tables: aligned in region 0; unaligned in region 1; unaligned and crossing into region 1.
    private static final long[] TABLES = {0x8000, MIB + 0x4004, MIB - 40};
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** One queue for all tries, so that each kind of refusal is logged once rather than per try. */
    private static RingFixture fixture;

    record Desc(long addr, int length, int flags, int next) {
        @Override
        public String toString() {
            return String.format("{0x%x, %d, f%d, n%d}", addr, length, flags, next);
        }
    }

    record Scenario(int base, boolean indirect, boolean eventIdx, List<Desc> descriptors, List<List<Desc>> tables,
                    List<Integer> heads, boolean availIdxJump) {}

    /** A buffer as the oracle expects it: gpa (-1 when empty), length, direction. */
    record Expected(long gpa, int length, boolean writable) {}

    private static RingFixture fixture() throws NativeException, InvalidMemoryException {
        if (fixture == null) {
            fixture = new RingFixture(SIZE, RAM, MIB);
        }
        return fixture;
    }

    @AfterContainer
    static void closeFixture() {
        if (fixture != null) {
            fixture.close();
            fixture = null;
        }
    }

    @Property(tries = 500)
    void shouldServeOnlyWellFormedChainsInsideGuestMemoryAndAccountForEveryHead(@ForAll("scenarios") Scenario s)
            throws Exception {
        RingFixture f = fixture();
        f.ram.at(f.descGpa, 16L * SIZE).fill((byte) 0);
        f.ram.at(f.availGpa, 6 + 2L * SIZE).fill((byte) 0);
        f.ram.at(f.usedGpa, 6 + 8L * SIZE).fill((byte) 0);
        for (int i = 0; i < SIZE; i++) {
            Desc d = s.descriptors().get(i);
            f.driver.writeDescriptor(i, d.addr(), d.length(), d.flags(), d.next());
        }
        for (int t = 0; t < TABLES.length; t++) {
            f.ram.at(TABLES[t], 16L * MAX_TABLE).fill((byte) 0);
            List<Desc> table = s.tables().get(t);
            for (int i = 0; i < table.size(); i++) {
                Desc d = table.get(i);
                f.writeIndirect(TABLES[t], i, d.addr(), d.length(), d.flags(), d.next());
            }
        }
        f.setUsedIdxInRing(s.base());
        f.driver.setAvailIdx(s.base());
        f.configure(s.base(), s.eventIdx(), s.indirect());
        f.errSignals();
        long chains0 = f.queue.counters().chains, rejected0 = f.queue.counters().chainsRejected();
        long[] rejectedBefore = new long[ChainError.values().length];
        for (ChainError e : ChainError.values()) {
            rejectedBefore[e.ordinal()] = f.queue.counters().chainsRejected(e);
        }
        for (int head : s.heads()) {
            f.driver.makeAvailable(head);
        }
        if (s.availIdxJump()) {
            f.driver.setAvailIdx(s.base() + s.heads().size() + SIZE + 1);
        }

        // What should happen, worked out from guest memory before the device looks at it.
        int reachable = s.availIdxJump() ? 0 : s.heads().size();
        for (int k = 0; k < reachable; k++) {
            if (s.heads().get(k) >= SIZE) {
                reachable = k;
            }
        }
        boolean expectBroken = s.availIdxJump() || reachable < s.heads().size();
        List<List<Expected>> expectedServed = new ArrayList<>();
        int expectedRejected = 0;
        for (int k = 0; k < reachable; k++) {
            List<Expected> chain = walk(f, s.heads().get(k), s.indirect());
            if (chain == null) {
                expectedRejected++;
            } else {
                expectedServed.add(chain);
            }
        }

        List<List<Expected>> served = new ArrayList<>();
        DescriptorChain c;
        for (int guard = 0; (c = f.queue.next()) != null; guard++) {
            assertTrue(guard < s.heads().size(), "more chains than were made available");
            served.add(checkInsideGuestMemory(f, c));
            f.queue.complete(c, 0);
        }
        f.queue.publish();

        Statistics.label("outcome").collect(expectBroken ? "broken" : "healthy");
        Statistics.label("served").collect(!served.isEmpty());
        for (ChainError e : ChainError.values()) {
            if (f.queue.counters().chainsRejected(e) > rejectedBefore[e.ordinal()]) {
                Statistics.label("refusals").collect(e);
            }
        }
        assertEquals(expectBroken, f.queue.isBroken());
        assertEquals(expectBroken ? 1 : 0, f.errSignals());
        assertEquals(expectedServed, served);
        assertEquals(expectedRejected, f.queue.counters().chainsRejected() - rejected0);
        assertEquals(served.size(), f.queue.counters().chains - chains0);
        assertEquals((s.base() + reachable) & 0xFFFF, f.queue.position().lastAvailIdx());
        if (expectBroken) {
            assertEquals(s.base(), f.driver.usedIdx(), "nothing published once broken");
            assertNull(f.queue.next());
        } else {
            assertEquals(s.heads().size(), served.size() + expectedRejected);
            assertEquals((s.base() + s.heads().size()) & 0xFFFF, f.driver.usedIdx());
            for (int k = 0; k < s.heads().size(); k++) {
                assertEquals((int) s.heads().get(k), f.usedId(s.base() + k), "used element " + k);
                assertEquals(0, f.usedLength(s.base() + k));
            }
            assertFalse(f.queue.hasAvailable());
        }
        // The generator must keep reaching every outcome, or the property proves little.
        Statistics.label("served").coverage(cov -> cov.check(true).percentage(p -> p >= 20));
        Statistics.label("outcome").coverage(cov -> cov.check("broken").percentage(p -> p >= 3));
        Statistics.label("refusals").coverage(cov -> {
            for (ChainError e : ChainError.values()) {
                cov.check(e).count(n -> n >= 1);
            }
        });
    }

    /** Checks every buffer against the region segment sizes; returns the chain as the oracle would. */
    private static List<Expected> checkInsideGuestMemory(RingFixture f, DescriptorChain c) {
        assertTrue(c.count() >= 1 && c.count() <= SIZE, c.toString());
        long readable = 0, writable = 0;
        List<Expected> out = new ArrayList<>();
        for (int i = 0; i < c.count(); i++) {
            int length = c.length(i);
            assertTrue(length >= 0, c.toString());
            if (i > 0 && c.isWritable(i - 1)) {
                assertTrue(c.isWritable(i), "readable after writable: " + c);
            }
            if (length == 0) {
                assertEquals(-1, c.region(i));
                assertEquals(0, c.segment(i).byteSize());
                out.add(new Expected(-1, 0, c.isWritable(i)));
            } else {
                int r = c.region(i);
                assertTrue(r >= 0 && r < f.memory.regionCount(), c.toString());
                long size = f.memory.segment(r).byteSize();
                assertTrue(c.offset(i) >= 0 && c.offset(i) <= size - length, c.toString());
                long gpa = f.memory.gpaBase(r) + c.offset(i);
                assertTrue(inOneRegion(f, gpa, length), c.toString());
                MemorySegment seg = c.segment(i);
                assertEquals(length, seg.byteSize());
                seg.get(ValueLayout.JAVA_BYTE, 0);
                seg.get(ValueLayout.JAVA_BYTE, length - 1);
                out.add(new Expected(gpa, length, c.isWritable(i)));
            }
            if (c.isWritable(i)) {
                writable += length;
            } else {
                readable += length;
            }
        }
        assertEquals(readable, c.readableLength());
        assertEquals(writable, c.writableLength());
        byte[] dst = new byte[4096];
        assertEquals(Math.min(4096, readable), c.read(0, MemorySegment.ofArray(dst), 0, 4096));
        return out;
    }

    /** Whether unsigned {@code [gpa, gpa + length)} lies in one region of the simulated guest RAM. */
    private static boolean inOneRegion(RingFixture f, long gpa, long length) {
        BigInteger start = new BigInteger(Long.toUnsignedString(gpa));
        BigInteger end = start.add(BigInteger.valueOf(length));
        for (int r = 0; r < f.ram.regionCount(); r++) {
            BigInteger rs = BigInteger.valueOf(f.ram.regionGpa(r));
            BigInteger re = rs.add(BigInteger.valueOf(f.ram.regionSize(r)));
            if (start.compareTo(rs) >= 0 && end.compareTo(re) <= 0) {
                return true;
            }
        }
        return false;
    }

    /** The spec's reading of the chain at {@code head}, from guest RAM directly; null when malformed. */
    private static List<Expected> walk(RingFixture f, int head, boolean indirectNegotiated) {
        long tableGpa = f.descGpa;
        int tableSize = SIZE;
        boolean inIndirect = false;
        boolean seenWritable = false;
        List<Expected> out = new ArrayList<>();
        int i = head;
        while (true) {
            MemorySegment d = f.ram.at(tableGpa + 16L * i, 16);
            long addr = d.get(U64, 0);
            int length = d.get(U32, 8);
            int flags = Short.toUnsignedInt(d.get(U16, 12));
            int next = Short.toUnsignedInt(d.get(U16, 14));
            long unsignedLength = Integer.toUnsignedLong(length);
            if ((flags & F_INDIRECT) != 0) {
                if (!indirectNegotiated || inIndirect || (flags & F_NEXT) != 0 || unsignedLength == 0
                        || unsignedLength % 16 != 0 || unsignedLength / 16 > SIZE
                        || !inOneRegion(f, addr, unsignedLength)) {
                    return null;
                }
                tableGpa = addr;
                tableSize = (int) (unsignedLength / 16);
                inIndirect = true;
                i = 0;
                continue;
            }
            boolean w = (flags & F_WRITE) != 0;
            if (out.size() == SIZE || (seenWritable && !w) || length < 0
                    || (length > 0 && !inOneRegion(f, addr, length))) {
                return null;
            }
            out.add(new Expected(length == 0 ? -1 : addr, length, w));
            seenWritable |= w;
            if ((flags & F_NEXT) == 0) {
                return out;
            }
            if (next >= tableSize) {
                return null;
            }
            i = next;
        }
    }

    // ---- generators ----

    @Provide
    Arbitrary<Scenario> scenarios() {
        Arbitrary<Desc> anyDesc = Combinators.combine(addresses(), lengths(), flags(), nexts()).as(Desc::new);
        // Pointers to the indirect tables, mostly plausible, so that tables (and tables in tables) get walked.
        Arbitrary<Desc> tablePointer = Combinators.combine(
                Arbitraries.of(TABLES[0], TABLES[1], TABLES[2], TABLES[0] + 16, TABLES[1] + 3),
                Arbitraries.frequencyOf(
                        Tuple.of(8, Arbitraries.integers().between(1, MAX_TABLE).map(k -> 16 * k)),
                        Tuple.of(1, lengths())),
                Arbitraries.frequency(Tuple.of(8, F_INDIRECT), Tuple.of(1, F_INDIRECT | F_WRITE),
                        Tuple.of(1, F_INDIRECT | F_NEXT)),
                nexts()).as(Desc::new);
        Arbitrary<Desc> desc = Arbitraries.frequencyOf(Tuple.of(5, anyDesc), Tuple.of(2, tablePointer));
        Arbitrary<Integer> base = Arbitraries.frequencyOf(
                Tuple.of(1, Arbitraries.integers().between(0, 0xFFFF)),
                Tuple.of(1, Arbitraries.integers().between(0xFFF0, 0xFFFF)));
        Arbitrary<Integer> head = Arbitraries.frequencyOf(
                Tuple.of(60, Arbitraries.integers().between(0, SIZE - 1)),
                Tuple.of(1, Arbitraries.integers().between(SIZE, 0xFFFF)));
        Arbitrary<Boolean> jump = Arbitraries.frequency(Tuple.of(40, false), Tuple.of(1, true));
        return Combinators.combine(base, Arbitraries.frequency(Tuple.of(4, true), Tuple.of(1, false)),
                Arbitraries.of(true, false), desc.list().ofSize(SIZE),
                desc.list().ofMinSize(1).ofMaxSize(MAX_TABLE).list().ofSize(TABLES.length),
                head.list().ofMaxSize(SIZE), jump).as(Scenario::new);
    }

    private static Arbitrary<Long> addresses() {
        return Arbitraries.frequencyOf(
                Tuple.of(8, Arbitraries.longs().between(0, RAM - 1)),
                Tuple.of(4, Arbitraries.of(TABLES[0], TABLES[1], TABLES[2], TABLES[0] + 16, TABLES[1] + 3)),
                Tuple.of(2, Arbitraries.longs().between(MIB - 64, MIB + 8)),
                Tuple.of(1, Arbitraries.longs().between(RAM - 64, RAM + 8)),
                Tuple.of(1, Arbitraries.longs().between(-64, -1)),
                Tuple.of(1, Arbitraries.of(Long.MIN_VALUE, Long.MAX_VALUE, 0x1_0000_0000L, 0L)),
                Tuple.of(1, Arbitraries.longs()));
    }

    private static Arbitrary<Integer> lengths() {
        return Arbitraries.frequencyOf(
                Tuple.of(6, Arbitraries.integers().between(0, 64)),
                Tuple.of(2, Arbitraries.integers().between(0, 8192)),
                Tuple.of(3, Arbitraries.integers().between(0, MAX_TABLE + 1).map(k -> 16 * k)),
                Tuple.of(1, Arbitraries.of(0x7FFF_FFFF, 0x8000_0000, -1, -16, (int) MIB, (int) RAM)),
                Tuple.of(1, Arbitraries.integers()));
    }

    private static Arbitrary<Integer> flags() {
        return Arbitraries.frequencyOf(
                Tuple.of(16, Arbitraries.of(0, F_NEXT, F_WRITE, F_NEXT | F_WRITE)),
                Tuple.of(4, Arbitraries.of(F_INDIRECT)),
                Tuple.of(3, Arbitraries.integers().between(0, 7)),
                Tuple.of(1, Arbitraries.integers().between(0, 0xFFFF)));
    }

    private static Arbitrary<Integer> nexts() {
        return Arbitraries.frequencyOf(
                Tuple.of(12, Arbitraries.integers().between(0, SIZE - 1)),
                Tuple.of(2, Arbitraries.integers().between(SIZE, MAX_TABLE)),
                Tuple.of(1, Arbitraries.integers().between(0, 0xFFFF)));
    }
}
