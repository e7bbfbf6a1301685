package io.jvhost.core.ring;

import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Ring corruption latches the queue broken: the err eventfd is written exactly once and nothing in
 * the used ring changes afterwards, whatever the device or driver does, until the queue is
 * configured again.
 */
class RingCorruptionTest {
    private static final int SIZE = 8;

    private RingFixture f;

    @BeforeEach
    void setUp() throws Exception {
        f = RingFixture.of(SIZE).configure(0, true, true);
    }

    @AfterEach
    void tearDown() {
        f.close();
    }

    /** Checks the latch and that no later call touches the used ring or signals anything. */
    private void assertLatchedAndInert() {
        assertTrue(f.queue.isBroken());
        assertEquals(1, f.queue.counters().ringCorruptions);
        byte[] usedBefore = f.usedRingBytes();
        int lastAvail = f.queue.position().lastAvailIdx();
        f.driver.takeInterrupts();

        assertNull(f.queue.next());
        assertFalse(f.queue.hasAvailable());
        f.queue.complete(3, 100);
        f.queue.publish();
        f.queue.disableNotifications();
        assertFalse(f.queue.enableNotifications());
        f.queue.latchBroken("again");
        f.driver.post(Buffer.readable(f.buffer(16), 16));
        assertNull(f.queue.next());
        f.queue.publish();

        assertArrayEquals(usedBefore, f.usedRingBytes(), "used ring untouched once broken");
        assertEquals(lastAvail, f.queue.position().lastAvailIdx());
        assertEquals(1, f.errSignals(), "err eventfd written exactly once");
        assertEquals(0, f.driver.takeInterrupts(), "no interrupt after the latch");
        assertEquals(1, f.queue.counters().ringCorruptions);
    }

    @Test
    void shouldServeExactlyAQueueFullWhenAvailIdxJumpsByTheQueueSize() {
        long buf = f.buffer(16);
        for (int i = 0; i < SIZE; i++) {
            f.driver.post(Buffer.readable(buf, 16));
        }
        for (int i = 0; i < SIZE; i++) {
            DescriptorChain c = f.queue.next();
            assertNotNull(c);
            assertEquals(i, c.head());
            f.queue.complete(c, 0);
        }
        assertNull(f.queue.next());
        assertFalse(f.queue.isBroken());
        f.queue.publish();
        assertEquals(SIZE, f.driver.usedIdx());
    }

    @ParameterizedTest
    @ValueSource(ints = {SIZE + 1, 100, 0x8000, 0xFFFF})
    void shouldLatchBrokenWhenAvailIdxJumpsByMoreThanTheQueueSize(int availIdx) {
        f.driver.setAvailIdx(availIdx);
        assertNull(f.queue.next());
        assertEquals(0, f.queue.position().lastAvailIdx());
        assertEquals(0, f.driver.usedIdx());
        assertLatchedAndInert();
    }

    @Test
    void shouldLatchBrokenWhenAvailIdxMovesBackwards() {
        f.driver.post(Buffer.readable(f.buffer(16), 16));
        f.driver.post(Buffer.readable(f.buffer(16), 16));
        assertNotNull(f.queue.next());
        f.queue.complete(0, 0);
        assertNotNull(f.queue.next());
        f.queue.complete(1, 0);
        f.queue.publish();
        f.driver.setAvailIdx(1);
        assertNull(f.queue.next());
        assertEquals(2, f.driver.usedIdx());
        assertLatchedAndInert();
    }

    @Test
    void shouldLatchBrokenWhenAvailIdxJumpsAcrossTheSixteenBitWrap() throws Exception {
        f.close();
        f = RingFixture.of(SIZE);
        f.setUsedIdxInRing(65533);
        f.driver.setAvailIdx(65533);
        f.configure(65533, true, true);
        f.driver.setAvailIdx(65533 + SIZE + 1); // 6 after wrapping: 9 ahead
        assertNull(f.queue.next());
        assertLatchedAndInert();
    }

    @Test
    void shouldLatchBrokenWhenTheJumpIsFirstSeenByEnableNotifications() {
        f.driver.setAvailIdx(SIZE + 1);
        assertFalse(f.queue.enableNotifications(), "a corrupt ring offers no work");
        assertNull(f.queue.next());
        assertEquals(0, f.queue.counters().chains + f.queue.counters().chainsRejected());
        assertEquals(0, f.driver.usedIdx());
        assertLatchedAndInert();
    }

    @Test
    void shouldLatchBrokenWhenTheJumpIsFirstSeenByHasAvailable() {
        f.driver.setAvailIdx(SIZE + 3);
        assertFalse(f.queue.hasAvailable());
        assertNull(f.queue.next());
        assertEquals(0, f.queue.counters().chains + f.queue.counters().chainsRejected());
        assertLatchedAndInert();
    }

    @ParameterizedTest
    @ValueSource(ints = {SIZE, SIZE + 1, 0x7FFF, 0xFFFF})
    void shouldLatchBrokenWhenAHeadIsOutOfRange(int head) {
        long buf = f.buffer(16);
        int good = f.driver.post(Buffer.readable(buf, 16));
        f.driver.makeAvailable(head);
        f.driver.post(Buffer.readable(buf, 16));

        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(good, c.head());
        f.queue.complete(c, 0);
        f.queue.publish();
        assertEquals(1, f.driver.usedIdx());
        assertEquals(1, f.driver.takeInterrupts());

        assertNull(f.queue.next(), "the chain after the corrupt head is not served");
        assertEquals(1, f.queue.position().lastAvailIdx(), "the corrupt head is not consumed");
        assertEquals(1, f.driver.usedIdx());
        assertEquals(0, f.queue.counters().chainsRejected());
        assertLatchedAndInert();
    }

    @Test
    void shouldNotPublishCompletionsPendingWhenTheQueueLatches() {
        int good = f.driver.post(Buffer.readable(f.buffer(16), 16));
        f.driver.makeAvailable(SIZE);
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        f.queue.complete(c, 0);
        assertEquals(good, f.usedId(0));
        assertNull(f.queue.next());
        f.queue.publish();
        assertEquals(0, f.driver.usedIdx(), "used idx is not moved once broken");
        assertLatchedAndInert();
    }

    @Test
    void shouldServeAgainOnceReconfiguredAfterTheDriverResetsTheRing() {
        f.driver.setAvailIdx(SIZE + 1);
        assertNull(f.queue.next());
        assertTrue(f.queue.isBroken());
        assertEquals(1, f.errSignals());

        f.driver.setAvailIdx(0); // the driver resets the device and starts over
        f.configure(0, true, true);
        assertFalse(f.queue.isBroken());
        int head = f.driver.post(Buffer.readable(f.buffer(16), 16));
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(head, c.head());
        f.queue.complete(c, 0);
        f.queue.publish();
        assertEquals(1, f.driver.usedIdx());
        assertEquals(0, f.errSignals());
    }

    @Test
    void shouldLatchBrokenOnlyOnceWhenLatchedRepeatedly() {
        f.queue.latchBroken("first");
        f.queue.latchBroken("second");
        assertEquals(1, f.errSignals());
        assertEquals(1, f.queue.counters().ringCorruptions);
    }

    @Test
    void shouldNotWriteAnErrEventfdWhenNoneIsConfigured() {
        f.queue.configure(SIZE, f.memory.translateHva(f.driver.descHva(), 16L * SIZE),
                f.memory.translateHva(f.driver.availHva(), 6 + 2L * SIZE),
                f.memory.translateHva(f.driver.usedHva(), 6 + 8L * SIZE), f.memory, 0, 0, -1);
        f.driver.makeAvailable(SIZE);
        assertNull(f.queue.next());
        assertTrue(f.queue.isBroken());
        assertEquals(0, f.errSignals());
    }
}
