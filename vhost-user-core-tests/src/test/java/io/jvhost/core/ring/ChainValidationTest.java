package io.jvhost.core.ring;

import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
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
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every rule a descriptor chain must satisfy, each broken on purpose: the malformed chain is
 * completed with length 0, its own counter goes up by one, the queue stays healthy and the next
 * well-formed chain is served. Bad descriptors live at table indices 8 and up; the good chain that
 * follows is written by the driver at index 0. A parser that lost its loop detection would spin
 * forever (deaf to interrupts), hence the timeout on a separate thread.
 */
@Timeout(value = 10, unit = TimeUnit.SECONDS, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class ChainValidationTest {
    private static final int SIZE = 16;
    private static final long MIB = 1 << 20;

    private RingFixture f;

    @BeforeEach
    void setUp() throws Exception {
        // Two adjacent regions: [0, 1 MiB) and [1 MiB, 2 MiB).
        f = new RingFixture(SIZE, 2 * MIB, MIB).configure();
    }

    @AfterEach
    void tearDown() {
        f.close();
    }

    /** Makes {@code badHead} available, then a good chain, and checks the outcome described above. */
    private void assertRejected(int badHead, ChainError expected) {
        int usedBefore = f.queue.position().usedIdx();
        f.driver.makeAvailable(badHead);
        long good = f.buffer(64, 7);
        int goodHead = f.driver.post(Buffer.readable(good, 64));

        DescriptorChain c = f.queue.next();
        assertNotNull(c, "the well-formed chain after the malformed one is served");
        assertEquals(goodHead, c.head());
        assertEquals(1, c.count());
        assertEquals(64, c.readableLength());
        f.queue.complete(c, 0);
        f.queue.publish();
        assertNull(f.queue.next());

        assertEquals(Map.of(expected, 1L), f.queue.counters().rejectedByError());
        assertEquals(1, f.queue.counters().chains);
        assertEquals((usedBefore + 2) & 0xFFFF, f.driver.usedIdx());
        assertEquals(badHead, f.usedId(usedBefore));
        assertEquals(0, f.usedLength(usedBefore));
        assertEquals(goodHead, f.usedId(usedBefore + 1));
        assertFalse(f.queue.isBroken());
        assertEquals(0, f.errSignals());
        assertEquals(0, f.queue.counters().ringCorruptions);
    }

    private DescriptorChain serveOnly(int head) {
        f.driver.makeAvailable(head);
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(head, c.head());
        assertEquals(0, f.queue.counters().chainsRejected());
        return c;
    }

    private long table(int entries) {
        return f.ram.allocate(16L * entries, 16);
    }

    // ---- well-formed chains ----

    @Test
    void shouldServeAChainOfReadableThenWritableBuffers() {
        long a = f.buffer(100), b = f.buffer(28), w = f.buffer(512);
        int head = f.driver.post(Buffer.readable(a, 100), Buffer.readable(b, 28), Buffer.writable(w, 512));
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(head, c.head());
        assertEquals(3, c.count());
        assertEquals(2, c.readableCount());
        assertEquals(1, c.writableCount());
        assertEquals(128, c.readableLength());
        assertEquals(512, c.writableLength());
        assertFalse(c.isWritable(1));
        assertTrue(c.isWritable(2));
        assertEquals(0, c.region(0));
        assertEquals(a, f.memory.gpaBase(c.region(0)) + c.offset(0));
        assertEquals(b, f.memory.gpaBase(c.region(1)) + c.offset(1));
        assertEquals(w, f.memory.gpaBase(c.region(2)) + c.offset(2));
        assertEquals(512, c.segment(2).byteSize());
        assertArrayEquals(f.ram.at(a, 100).toArray(JAVA_BYTE), c.segment(0).toArray(JAVA_BYTE));
        assertEquals(1, f.queue.counters().chains);
        assertEquals(3, f.queue.counters().descriptors);
    }

    @Test
    void shouldServeAChainUsingEveryDescriptorOfTheTable() {
        long buf = f.buffer(16);
        for (int i = 0; i < SIZE; i++) { // a permutation of all 16 descriptors: 5, 10, 15, 4, ...
            int d = (5 * i + 5) % SIZE;
            f.driver.writeDescriptor(d, buf, 16, i == SIZE - 1 ? 0 : F_NEXT, (5 * (i + 1) + 5) % SIZE);
        }
        DescriptorChain c = serveOnly(5);
        assertEquals(SIZE, c.count());
        assertEquals(16L * SIZE, c.readableLength());
    }

    @Test
    void shouldServeZeroLengthBuffersWithoutTranslatingTheirAddress() {
        long w = f.buffer(32, 1);
        f.driver.writeDescriptor(8, -1L, 0, F_NEXT, 9); // unmapped, but empty
        f.driver.writeDescriptor(9, w, 32, F_WRITE | F_NEXT, 10);
        f.driver.writeDescriptor(10, 0x7fff_ffff_ffff_0000L, 0, F_WRITE, 0);
        DescriptorChain c = serveOnly(8);
        assertEquals(3, c.count());
        assertEquals(-1, c.region(0));
        assertEquals(0, c.length(0));
        assertEquals(0, c.segment(0).byteSize());
        assertEquals(-1, c.region(2));
        assertEquals(0, c.segment(2).byteSize());
        assertEquals(0, c.readableLength());
        assertEquals(32, c.writableLength());
    }

    @Test
    void shouldServeBuffersEndingExactlyAtTheEndOfARegion() {
        f.driver.writeDescriptor(8, MIB - 16, 16, F_NEXT, 9);          // last bytes of region 0
        f.driver.writeDescriptor(9, MIB, 16, F_NEXT, 10);              // first bytes of region 1
        f.driver.writeDescriptor(10, 2 * MIB - 1, 1, F_WRITE, 0);      // last byte of guest memory
        DescriptorChain c = serveOnly(8);
        assertEquals(0, c.region(0));
        assertEquals(MIB - 16, c.offset(0));
        assertEquals(1, c.region(1));
        assertEquals(0, c.offset(1));
        assertEquals(1, c.region(2));
        assertEquals(MIB - 1, c.offset(2));
        assertEquals(1, c.segment(2).byteSize());
    }

    @Test
    void shouldServeADescriptorSpanningAWholeRegion() {
        f.driver.writeDescriptor(8, MIB, (int) MIB, F_WRITE, 0);
        DescriptorChain c = serveOnly(8);
        assertEquals(1, c.region(0));
        assertEquals(MIB, c.segment(0).byteSize());
    }

    // ---- loops and length ----

    @Test
    void shouldCompleteWithZeroLengthWhenADescriptorPointsToItself() {
        f.driver.writeDescriptor(8, f.buffer(16), 16, F_NEXT, 8);
        assertRejected(8, ChainError.CHAIN_TOO_LONG);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenDescriptorsFormALoop() {
        long buf = f.buffer(16);
        f.driver.writeDescriptor(8, buf, 16, F_NEXT, 9);
        f.driver.writeDescriptor(9, buf, 16, F_NEXT, 10);
        f.driver.writeDescriptor(10, buf, 16, F_NEXT, 9);
        assertRejected(8, ChainError.CHAIN_TOO_LONG);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenALoopConsistsOfZeroLengthDescriptors() {
        f.driver.writeDescriptor(8, 0, 0, F_WRITE | F_NEXT, 9);
        f.driver.writeDescriptor(9, 0, 0, F_WRITE | F_NEXT, 8);
        assertRejected(8, ChainError.CHAIN_TOO_LONG);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenAnIndirectTableLoops() {
        long buf = f.buffer(16);
        long t = table(3);
        f.writeIndirect(t, 0, buf, 16, F_NEXT, 1);
        f.writeIndirect(t, 1, buf, 16, F_NEXT, 2);
        f.writeIndirect(t, 2, buf, 16, F_NEXT, 0);
        f.driver.writeDescriptor(8, t, 48, F_INDIRECT, 0);
        assertRejected(8, ChainError.CHAIN_TOO_LONG);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenDirectAndIndirectBuffersTogetherExceedTheQueueSize() {
        long buf = f.buffer(16);
        long t = table(SIZE);
        for (int i = 0; i < SIZE; i++) {
            f.writeIndirect(t, i, buf, 16, i == SIZE - 1 ? 0 : F_NEXT, i + 1);
        }
        f.driver.writeDescriptor(8, buf, 16, F_NEXT, 9);
        f.driver.writeDescriptor(9, t, 16 * SIZE, F_INDIRECT, 0);
        assertRejected(8, ChainError.CHAIN_TOO_LONG);
    }

    @Test
    void shouldServeAnIndirectTableOfExactlyTheQueueSize() {
        long buf = f.buffer(16);
        long t = table(SIZE);
        for (int i = 0; i < SIZE; i++) {
            f.writeIndirect(t, i, buf, 16, (i == SIZE - 1 ? 0 : F_NEXT) | (i >= 10 ? F_WRITE : 0), i + 1);
        }
        f.driver.writeDescriptor(8, t, 16 * SIZE, F_INDIRECT, 0);
        DescriptorChain c = serveOnly(8);
        assertEquals(SIZE, c.count());
        assertEquals(10, c.readableCount());
        assertEquals(6, c.writableCount());
    }

    // ---- next index ----

    @ParameterizedTest
    @ValueSource(ints = {SIZE, SIZE + 1, 0xFFFF})
    void shouldCompleteWithZeroLengthWhenNextIsBeyondTheTable(int next) {
        f.driver.writeDescriptor(8, f.buffer(16), 16, F_NEXT, next);
        assertRejected(8, ChainError.NEXT_OUT_OF_RANGE);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenNextIsBeyondAnIndirectTableButInsideTheQueue() {
        long buf = f.buffer(16);
        long t = table(2);
        f.writeIndirect(t, 0, buf, 16, F_NEXT, 1);
        f.writeIndirect(t, 1, buf, 16, F_NEXT, 2); // 2 < queue size, but the table has 2 entries
        f.driver.writeDescriptor(8, t, 32, F_INDIRECT, 0);
        assertRejected(8, ChainError.NEXT_OUT_OF_RANGE);
    }

    @Test
    void shouldIgnoreNextWhenTheNextFlagIsClear() {
        f.driver.writeDescriptor(8, f.buffer(16), 16, 0, 0xFFFF);
        assertEquals(1, serveOnly(8).count());
    }

    // ---- indirect descriptors ----

    @Test
    void shouldServeAnIndirectTableAfterDirectReadableBuffers() {
        long a = f.buffer(8), b = f.buffer(24), w = f.buffer(40);
        long t = table(2);
        f.writeIndirect(t, 0, b, 24, F_NEXT, 1);
        f.writeIndirect(t, 1, w, 40, F_WRITE, 0);
        f.driver.writeDescriptor(8, a, 8, F_NEXT, 9);
        f.driver.writeDescriptor(9, t, 32, F_INDIRECT | F_WRITE, 0); // WRITE on the pointer is ignored
        DescriptorChain c = serveOnly(8);
        assertEquals(3, c.count());
        assertEquals(32, c.readableLength());
        assertEquals(40, c.writableLength());
        assertEquals(b, f.memory.gpaBase(c.region(1)) + c.offset(1));
        assertEquals(w, f.memory.gpaBase(c.region(2)) + c.offset(2));
    }

    @Test
    void shouldServeAnIndirectChainWrittenByTheDriver() {
        long r = f.buffer(10), w = f.buffer(20);
        int head = f.driver.indirectChain(Buffer.readable(r, 10), Buffer.writable(w, 20));
        DescriptorChain c = serveOnly(head);
        assertEquals(2, c.count());
        assertEquals(10, c.readableLength());
        assertEquals(20, c.writableLength());
    }

    @ParameterizedTest
    @ValueSource(longs = {4, 8, 1, 0xFFE})
    void shouldServeAnIndirectTableAtAnUnalignedAddress(long misalignment) {
        long r = f.buffer(10, 3), w = f.buffer(20);
        long t = table(3) + misalignment;
        f.writeIndirect(t, 0, r, 10, F_NEXT, 1);
        f.writeIndirect(t, 1, w, 20, F_WRITE, 0);
        f.driver.writeDescriptor(8, t, 32, F_INDIRECT, 0);
        DescriptorChain c = serveOnly(8);
        assertEquals(2, c.count());
        assertEquals(r, f.memory.gpaBase(c.region(0)) + c.offset(0));
        assertEquals(10, c.length(0));
        assertEquals(20, c.writableLength());
    }

    @Test
    void shouldCompleteWithZeroLengthWhenIndirectIsNotNegotiated() {
        f.configure(0, false, false);
        long t = table(1);
        f.writeIndirect(t, 0, f.buffer(16), 16, 0, 0);
        f.driver.writeDescriptor(8, t, 16, F_INDIRECT, 0);
        assertRejected(8, ChainError.INDIRECT_NOT_NEGOTIATED);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenAnIndirectTableIsNested() {
        long buf = f.buffer(16);
        long inner = table(1), outer = table(1);
        f.writeIndirect(inner, 0, buf, 16, 0, 0);
        f.writeIndirect(outer, 0, inner, 16, F_INDIRECT, 0);
        f.driver.writeDescriptor(8, outer, 16, F_INDIRECT, 0);
        assertRejected(8, ChainError.INDIRECT_NESTED);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenAnIndirectTableIsNestedAfterABuffer() {
        long buf = f.buffer(16);
        long inner = table(1), outer = table(2);
        f.writeIndirect(inner, 0, buf, 16, 0, 0);
        f.writeIndirect(outer, 0, buf, 16, F_NEXT, 1);
        f.writeIndirect(outer, 1, inner, 16, F_INDIRECT, 0);
        f.driver.writeDescriptor(8, outer, 32, F_INDIRECT, 0);
        assertRejected(8, ChainError.INDIRECT_NESTED);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenAnIndirectDescriptorHasNext() {
        long buf = f.buffer(16);
        long t = table(1);
        f.writeIndirect(t, 0, buf, 16, 0, 0);
        f.driver.writeDescriptor(8, t, 16, F_INDIRECT | F_NEXT, 9);
        f.driver.writeDescriptor(9, buf, 16, 0, 0);
        assertRejected(8, ChainError.INDIRECT_WITH_NEXT);
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 8, 15, 17, 24, 16 * SIZE + 16, 16 * SIZE + 8, 0x8000_0000, -16})
    void shouldCompleteWithZeroLengthWhenAnIndirectTableHasABadLength(int length) {
        long t = table(SIZE + 1);
        for (int i = 0; i <= SIZE; i++) {
            f.writeIndirect(t, i, f.buffer(16), 16, 0, 0);
        }
        f.driver.writeDescriptor(8, t, length, F_INDIRECT, 0);
        assertRejected(8, ChainError.INDIRECT_BAD_LENGTH);
    }

    @ParameterizedTest
    @ValueSource(longs = {2 * MIB, 2 * MIB - 8, MIB - 16, 0x1_0000_0000L, -16, -1, Long.MIN_VALUE})
    void shouldCompleteWithZeroLengthWhenAnIndirectTableIsUnmappedOrCrossesRegions(long address) {
        // 2 MiB: past the end; 2 MiB - 8: runs off the end; 1 MiB - 16: crosses into region 1;
        // -16: wraps past 2^64.
        if (address == MIB - 16) {
            f.writeIndirect(address, 0, f.buffer(16), 16, F_NEXT, 1);
            f.writeIndirect(address, 1, f.buffer(16), 16, 0, 0);
        }
        f.driver.writeDescriptor(8, address, 32, F_INDIRECT, 0);
        assertRejected(8, ChainError.INDIRECT_UNMAPPED);
    }

    // ---- buffers ----

    @ParameterizedTest
    @ValueSource(ints = {0, F_WRITE})
    void shouldCompleteWithZeroLengthWhenAddressPlusLengthOverflows2To64(int flags) {
        f.driver.writeDescriptor(8, -16, 64, flags, 0);
        assertRejected(8, ChainError.BUFFER_UNMAPPED);
    }

    @ParameterizedTest
    @ValueSource(longs = {2 * MIB, 2 * MIB + 4096, 0x1_0000_0000L, 0x8000_0000_0000_0000L, -4096})
    void shouldCompleteWithZeroLengthWhenAddressUnmapped(long address) {
        f.driver.writeDescriptor(8, address, 16, 0, 0);
        assertRejected(8, ChainError.BUFFER_UNMAPPED);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenABufferRunsPastTheEndOfGuestMemory() {
        f.driver.writeDescriptor(8, 2 * MIB - 8, 16, F_WRITE, 0);
        assertRejected(8, ChainError.BUFFER_UNMAPPED);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenABufferCrossesTheBoundaryBetweenTwoRegions() {
        f.driver.writeDescriptor(8, MIB - 8, 16, 0, 0);
        assertRejected(8, ChainError.BUFFER_UNMAPPED);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenALaterBufferOfTheChainIsUnmapped() {
        f.driver.writeDescriptor(8, f.buffer(16), 16, F_NEXT, 9);
        f.driver.writeDescriptor(9, MIB - 1, 2, F_WRITE, 0);
        assertRejected(8, ChainError.BUFFER_UNMAPPED);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenABufferInAnIndirectTableIsUnmapped() {
        long t = table(2);
        f.writeIndirect(t, 0, f.buffer(16), 16, F_NEXT, 1);
        f.writeIndirect(t, 1, -16, 64, F_WRITE, 0);
        f.driver.writeDescriptor(8, t, 32, F_INDIRECT, 0);
        assertRejected(8, ChainError.BUFFER_UNMAPPED);
    }

    @ParameterizedTest
    @ValueSource(ints = {0x8000_0000, 0xFFFF_FFFF, 0x9000_0000})
    void shouldCompleteWithZeroLengthWhenAReadableBufferIsTwoGibibytesOrLonger(int length) {
        f.driver.writeDescriptor(8, 0x1000, length, 0, 0);
        assertRejected(8, ChainError.BUFFER_TOO_LONG);
    }

    @ParameterizedTest
    @ValueSource(ints = {0x8000_0000, 0xFFFF_FFFF})
    void shouldCompleteWithZeroLengthWhenAWritableBufferIsTwoGibibytesOrLonger(int length) {
        f.driver.writeDescriptor(8, f.buffer(16), 16, F_NEXT, 9);
        f.driver.writeDescriptor(9, 0x1000, length, F_WRITE, 0);
        assertRejected(8, ChainError.BUFFER_TOO_LONG);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenAReadableBufferFollowsAWritableOne() {
        f.driver.writeDescriptor(8, f.buffer(16), 16, F_WRITE | F_NEXT, 9);
        f.driver.writeDescriptor(9, f.buffer(16), 16, 0, 0);
        assertRejected(8, ChainError.READABLE_AFTER_WRITABLE);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenAZeroLengthReadableBufferFollowsAWritableOne() {
        f.driver.writeDescriptor(8, f.buffer(16), 16, F_WRITE | F_NEXT, 9);
        f.driver.writeDescriptor(9, 0, 0, 0, 0);
        assertRejected(8, ChainError.READABLE_AFTER_WRITABLE);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenAReadableBufferFollowsAWritableOneInsideAnIndirectTable() {
        long t = table(3);
        f.writeIndirect(t, 0, f.buffer(16), 16, F_NEXT, 1);
        f.writeIndirect(t, 1, f.buffer(16), 16, F_WRITE | F_NEXT, 2);
        f.writeIndirect(t, 2, f.buffer(16), 16, 0, 0);
        f.driver.writeDescriptor(8, t, 48, F_INDIRECT, 0);
        assertRejected(8, ChainError.READABLE_AFTER_WRITABLE);
    }

    @Test
    void shouldCompleteWithZeroLengthWhenAnIndirectTableStartsReadableAfterADirectWritableBuffer() {
        long t = table(1);
        f.writeIndirect(t, 0, f.buffer(16), 16, 0, 0);
        f.driver.writeDescriptor(8, f.buffer(16), 16, F_WRITE | F_NEXT, 9);
        f.driver.writeDescriptor(9, t, 16, F_INDIRECT, 0);
        assertRejected(8, ChainError.READABLE_AFTER_WRITABLE);
    }

    @Test
    void shouldCountEachKindOfMalformedChainSeparatelyAndKeepServing() {
        f.driver.writeDescriptor(8, f.buffer(16), 16, F_NEXT, 8);
        f.driver.writeDescriptor(9, -16, 64, 0, 0);
        f.driver.writeDescriptor(10, -16, 64, 0, 0);
        f.driver.writeDescriptor(11, 0x1000, -1, 0, 0);
        int good = f.driver.chain(Buffer.writable(f.buffer(16), 16));
        for (int head : new int[] {8, 9, good, 10, 11}) {
            f.driver.makeAvailable(head);
        }
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(good, c.head());
        f.queue.complete(c, 16);
        assertNull(f.queue.next());
        f.queue.publish();
        assertEquals(Map.of(ChainError.CHAIN_TOO_LONG, 1L, ChainError.BUFFER_UNMAPPED, 2L,
                ChainError.BUFFER_TOO_LONG, 1L), f.queue.counters().rejectedByError());
        assertEquals(4, f.queue.counters().chainsRejected());
        assertEquals(5, f.driver.usedIdx());
        int[] ids = {8, 9, good, 10, 11};
        int[] lengths = {0, 0, 16, 0, 0};
        for (int i = 0; i < 5; i++) {
            assertEquals(ids[i], f.usedId(i));
            assertEquals(lengths[i], f.usedLength(i));
        }
    }

    // ---- time of check vs. time of use ----

    @Test
    void shouldKeepTheChainAsReadWhenTheDriverRewritesDescriptorsAfterNext() {
        long r = f.buffer(24, 40), w = f.buffer(48), other = f.buffer(4096, 90);
        long t = table(1);
        f.writeIndirect(t, 0, w, 48, F_WRITE, 0);
        f.driver.writeDescriptor(8, r, 24, F_NEXT, 9);
        f.driver.writeDescriptor(9, t, 16, F_INDIRECT, 0);
        DescriptorChain c = serveOnly(8);

        // The driver now points everything somewhere else, hostile or not.
        f.driver.writeDescriptor(8, other, 4096, F_WRITE | F_NEXT, 8);
        f.driver.writeDescriptor(9, -16, 64, F_NEXT, 0xFFFF);
        f.writeIndirect(t, 0, -16, -1, F_INDIRECT | F_NEXT, 0);

        assertEquals(2, c.count());
        assertEquals(24, c.length(0));
        assertFalse(c.isWritable(0));
        assertEquals(r, f.memory.gpaBase(c.region(0)) + c.offset(0));
        assertEquals(48, c.length(1));
        assertTrue(c.isWritable(1));
        assertEquals(w, f.memory.gpaBase(c.region(1)) + c.offset(1));
        byte[] read = new byte[24];
        assertEquals(24, c.read(0, MemorySegment.ofArray(read), 0, 100));
        assertArrayEquals(f.ram.at(r, 24).toArray(JAVA_BYTE), read);
        assertEquals(48, c.write(MemorySegment.ofArray(new byte[100]), 0, 0, 100));
        assertEquals(90, f.ram.at(other, 1).get(JAVA_BYTE, 0), "the rewritten target is untouched");
    }
}
