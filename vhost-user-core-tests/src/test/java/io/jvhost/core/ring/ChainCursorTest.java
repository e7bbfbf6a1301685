package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static io.jvhost.core.ring.RingFixture.F_INDIRECT;
import static io.jvhost.core.ring.RingFixture.F_NEXT;
import static io.jvhost.core.ring.RingFixture.F_WRITE;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link ChainCursor} walks a chain's readable bytes, writable bytes or every buffer as pieces of
 * guest memory: from any skip offset, across buffer boundaries and both regions, past zero-length
 * buffers, with each piece capped, through direct and indirect chains. And
 * {@link DescriptorChain#parseSplit} parses a chain from a table without a queue.
 */
class ChainCursorTest {
    private static final long MIB = 1 << 20;
    // Lengths of the readable then the writable buffers; the odd ones live in region 1.
    private static final int[] READABLE = {3, 0, 17, 1, 64, 5, 0};
    private static final int[] WRITABLE = {0, 7, 0, 33, 1, 100, 2};

    private RingFixture f;
    private long[] gpas;
    private int[] lengths;
    private long nextHigh = MIB + 0x100;
    private final ChainCursor cursor = new ChainCursor();

    @BeforeEach
    void setUp() throws Exception {
        f = new RingFixture(16, 2 * MIB, MIB).configure();
    }

    @AfterEach
    void tearDown() {
        f.close();
    }

    /** Writes the buffers, each filled with its own pattern, as a direct chain or an indirect table. */
    private DescriptorChain chain(boolean indirect) {
        int n = READABLE.length + WRITABLE.length;
        gpas = new long[n];
        lengths = new int[n];
        for (int i = 0; i < n; i++) {
            lengths[i] = i < READABLE.length ? READABLE[i] : WRITABLE[i - READABLE.length];
            if (i % 2 == 0) {
                gpas[i] = f.buffer(lengths[i], 17 * i);
            } else {
                gpas[i] = nextHigh;
                nextHigh += lengths[i] + 32;
                for (int j = 0; j < lengths[i]; j++) {
                    f.ram.at(gpas[i] + j, 1).set(JAVA_BYTE, 0, (byte) (17 * i + j));
                }
            }
        }
        long table = f.ram.allocate(16L * n, 16);
        for (int i = 0; i < n; i++) {
            int flags = (i < READABLE.length ? 0 : F_WRITE) | (i == n - 1 ? 0 : F_NEXT);
            if (indirect) {
                f.writeIndirect(table, i, gpas[i], lengths[i], flags, i + 1);
            } else {
                f.driver.writeDescriptor(1 + i, gpas[i], lengths[i], flags, 2 + i);
            }
        }
        if (indirect) {
            f.driver.writeDescriptor(1, table, 16 * n, F_INDIRECT, 0);
        }
        f.driver.makeAvailable(1);
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(n, c.count());
        return c;
    }

    /** The guest-physical address of every byte of the readable or writable stream, in order. */
    private long[] stream(boolean writable) {
        List<Long> bytes = new ArrayList<>();
        for (int i = 0; i < gpas.length; i++) {
            if ((i >= READABLE.length) == writable) {
                for (int j = 0; j < lengths[i]; j++) {
                    bytes.add(gpas[i] + j);
                }
            }
        }
        return bytes.stream().mapToLong(Long::longValue).toArray();
    }

    /**
     * Walks from {@code skip} with pieces of at most {@code cap} and checks that the pieces are the
     * stream's bytes from {@code skip} on, in order, none empty, none crossing a buffer, and that
     * each piece's (memory, offset) holds the bytes at its gpa.
     */
    private void assertWalk(DescriptorChain c, boolean writable, long skip, long cap) {
        long[] stream = stream(writable);
        ChainCursor b = writable ? cursor.writable(c, skip) : cursor.readable(c, skip);
        int pos = (int) Math.min(skip, stream.length);
        while (b.next(cap)) {
            String where = "skip " + skip + " cap " + cap + " at " + pos;
            assertTrue(b.length() > 0 && b.length() <= cap, where);
            assertEquals(writable, b.isWritable(), where);
            assertEquals(stream[pos], b.gpa(), where);
            assertEquals(stream[pos + (int) b.length() - 1], b.gpa() + b.length() - 1, where + ": piece crosses buffers");
            long inBuffer = b.gpa() - gpas[b.buffer()];
            assertTrue(inBuffer >= 0 && inBuffer + b.length() <= lengths[b.buffer()], where);
            assertArrayEquals(f.ram.at(b.gpa(), b.length()).toArray(JAVA_BYTE),
                    b.memory().asSlice(b.offset(), b.length()).toArray(JAVA_BYTE), where);
            pos += (int) b.length();
        }
        assertEquals(stream.length, pos, "skip " + skip + " cap " + cap + ": the walk ends at the stream's end");
        assertEquals(0, b.length());
        assertFalse(b.next(cap), "a finished walk stays finished");
    }

    @ParameterizedTest(name = "indirect {0}")
    @ValueSource(booleans = {false, true})
    void shouldWalkReadableBytesFromAnySkipAcrossBufferBoundaries(boolean indirect) {
        DescriptorChain c = chain(indirect);
        for (long skip = 0; skip <= c.readableLength() + 2; skip++) {
            for (long cap : new long[] {1, 2, 5, 16, 64, Long.MAX_VALUE}) {
                assertWalk(c, false, skip, cap);
            }
        }
    }

    @ParameterizedTest(name = "indirect {0}")
    @ValueSource(booleans = {false, true})
    void shouldWalkWritableBytesFromAnySkipAcrossBufferBoundaries(boolean indirect) {
        DescriptorChain c = chain(indirect);
        for (long skip = 0; skip <= c.writableLength() + 2; skip++) {
            for (long cap : new long[] {1, 3, 7, 33, 100, Long.MAX_VALUE}) {
                assertWalk(c, true, skip, cap);
            }
        }
    }

    @Test
    void shouldWalkEveryNonEmptyBufferReadableThenWritable() {
        DescriptorChain c = chain(false);
        List<Integer> seen = new ArrayList<>();
        for (ChainCursor b = cursor.all(c); b.next(Long.MAX_VALUE); ) {
            assertEquals(gpas[b.buffer()], b.gpa());
            assertEquals(lengths[b.buffer()], b.length());
            assertEquals(b.buffer() >= READABLE.length, b.isWritable());
            seen.add(b.buffer());
        }
        List<Integer> expected = new ArrayList<>();
        for (int i = 0; i < lengths.length; i++) {
            if (lengths[i] > 0) {
                expected.add(i);
            }
        }
        assertEquals(expected, seen);
    }

    @Test
    void shouldContinueInTheSameBufferAfterACappedPiece() {
        long w = f.buffer(10, 0);
        f.driver.writeDescriptor(3, w, 10, F_WRITE, 0);
        f.driver.makeAvailable(3);
        DescriptorChain c = f.queue.next();
        ChainCursor b = cursor.writable(c, 2);
        assertTrue(b.next(3));
        assertEquals(w + 2, b.gpa());
        assertEquals(3, b.length());
        assertFalse(b.next(0), "a cap of 0 ends nothing but yields no piece");
        assertTrue(b.next(100));
        assertEquals(w + 5, b.gpa());
        assertEquals(5, b.length());
        assertFalse(b.next(100));
    }

    @Test
    void shouldYieldNothingForAChainOfZeroLengthBuffersOrAnEmptyDirection() {
        f.driver.writeDescriptor(4, 0xdead_0000L, 0, F_NEXT, 5);
        f.driver.writeDescriptor(5, 0, 0, F_WRITE | F_NEXT, 6);
        f.driver.writeDescriptor(6, -1L, 0, F_WRITE, 0);
        f.driver.makeAvailable(4);
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(3, c.count());
        assertFalse(cursor.readable(c, 0).next(Long.MAX_VALUE));
        assertFalse(cursor.writable(c, 0).next(Long.MAX_VALUE));
        assertFalse(cursor.all(c).next(Long.MAX_VALUE));

        long r = f.buffer(8, 1);
        f.driver.writeDescriptor(7, r, 8, 0, 0);
        f.driver.makeAvailable(7);
        c = f.queue.next();
        assertFalse(cursor.writable(c, 0).next(1), "no writable buffers");
        assertTrue(cursor.readable(c, 7).next(8));
        assertEquals(1, cursor.length());
    }

    @Test
    void shouldCopyThroughTheCurrentPieceAndMarkItDirty() {
        MemorySegment bitmap = Arena.ofAuto().allocate(2 * MIB / 4096 / 8, 8);
        DirtyLog log = new DirtyLog(bitmap);
        f.queue.dirtyLog(log, -1, f.usedGpa);
        f.configure();
        long page = 0x80000; // far above what the fixture allocates
        f.driver.writeDescriptor(2, page + 100, 16, F_WRITE | F_NEXT, 3);
        f.driver.writeDescriptor(3, page + 3 * 4096, 8, F_WRITE, 0);
        f.driver.makeAvailable(2);
        DescriptorChain c = f.queue.next();
        bitmap.fill((byte) 0);

        byte[] src = new byte[32];
        Arrays.fill(src, (byte) 0x5A);
        ChainCursor b = cursor.writable(c, 4);
        assertTrue(b.next(Long.MAX_VALUE));
        assertEquals(12, b.copyFrom(MemorySegment.ofArray(src), 0));
        assertArrayEquals(Arrays.copyOf(src, 12), f.ram.at(page + 104, 12).toArray(JAVA_BYTE));
        assertTrue(log.isDirty(page));
        assertFalse(log.isDirty(page + 3 * 4096));

        assertTrue(b.next(Long.MAX_VALUE));
        b.memory().set(JAVA_BYTE, b.offset(), (byte) 1);
        assertFalse(log.isDirty(page + 3 * 4096), "a store of the device's own is not seen");
        b.markWritten();
        assertTrue(log.isDirty(page + 3 * 4096));
        assertFalse(log.isDirty(page + 4096));

        byte[] out = new byte[8];
        assertEquals(8, b.copyTo(MemorySegment.ofArray(out), 0));
        assertEquals(1, out[0]);
    }

    @Test
    void shouldParseASplitChainFromATableWithoutAQueue() {
        MemorySegment desc = f.memory.translate(f.descGpa, 16L * f.size);
        long r = f.buffer(12, 3), w = f.buffer(20, 4), table = f.ram.allocate(32, 16);
        f.driver.writeDescriptor(9, r, 12, F_NEXT, 10);
        f.driver.writeDescriptor(10, table, 32, F_INDIRECT, 0);
        f.writeIndirect(table, 0, w, 4, F_WRITE | F_NEXT, 1);
        f.writeIndirect(table, 1, w + 4, 16, F_WRITE, 0);
        DescriptorChain c = new DescriptorChain(f.size);
        assertNull(c.parseSplit(desc, f.size, 9, f.memory, true));
        assertNull(c.error());
        assertEquals(9, c.head());
        assertEquals(3, c.count());
        assertEquals(12, c.readableLength());
        assertEquals(20, c.writableLength());
        assertEquals(20, c.write(MemorySegment.ofArray(new byte[20]), 0, 0, 64));
        byte[] readable = new byte[12];
        assertEquals(12, c.read(0, MemorySegment.ofArray(readable), 0, 64));
        assertArrayEquals(f.ram.at(r, 12).toArray(JAVA_BYTE), readable);

        assertEquals(ChainError.INDIRECT_NOT_NEGOTIATED, c.parseSplit(desc, f.size, 9, f.memory, false));
        assertEquals(ChainError.INDIRECT_NOT_NEGOTIATED, c.error());
        f.driver.writeDescriptor(11, r, 12, F_NEXT, 11);
        assertEquals(ChainError.CHAIN_TOO_LONG, c.parseSplit(desc, f.size, 11, f.memory, true));
        assertEquals(0, f.queue.counters().chains, "no queue was involved");
        assertThrows(IllegalArgumentException.class, () -> c.parseSplit(desc, f.size, f.size, f.memory, true));
        assertThrows(IllegalArgumentException.class, () -> c.parseSplit(desc, 2 * f.size, 0, f.memory, true));
    }
}
