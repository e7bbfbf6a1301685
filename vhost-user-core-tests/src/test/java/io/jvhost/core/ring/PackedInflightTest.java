package io.jvhost.core.ring;

import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.time.Duration;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * In-flight tracking of a packed ring in the spec's {@code QueueRegionPacked} layout: a backend
 * that dies leaves the region to the next, which resubmits exactly the chains taken and not used,
 * in the order they were taken, from the region's copies of their descriptors (the ring slots may
 * hold used descriptors by then), and resumes the ring where the region says, whatever base the
 * frontend sends. A crash in the middle of publishing a batch is committed or rolled back as the
 * ring's flags show.
 */
class PackedInflightTest {
    private static final Duration NOW = Duration.ofSeconds(1);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    // QueueRegionPacked (vhost-user spec), written out here rather than taken from the code under test.
    private static final long USED_IDX = 16, OLD_USED_IDX = 18, OLD_FREE_HEAD = 14, FREE_HEAD = 12, DESC = 32;
    private static final int SIZE = 8;
    private static final long STALE_BASE = 0x8000_8000L; // QEMU after a crash: the base of its last start

    private RingFixture f;
    private Arena arena;
    private MemorySegment region;

    @BeforeEach
    void setUp() throws Exception {
        f = RingFixture.packed(SIZE);
        arena = Arena.ofConfined();
        region = arena.allocate(PackedInflightLog.queueRegionSize(SIZE), 64);
        PackedInflightLog.initialize(region, SIZE);
        f.queue.inflight(region);
        f.configure(f.freshBase(), 0);
    }

    @AfterEach
    void tearDown() {
        f.close();
        arena.close();
    }

    private DescriptorChain take() {
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        return c;
    }

    @Test
    void shouldResubmitTheChainsLeftInFlightInTheOrderTheyWereTakenAndResumeWhereTheRegionSays() {
        long buf = f.buffer(64);
        int a = f.driver.post(Buffer.readable(buf, 8), Buffer.writable(buf, 16)); // slots 0-1
        int b = f.driver.post(Buffer.writable(buf, 32));                         // slot 2
        int c = f.driver.post(Buffer.readable(buf, 4), Buffer.readable(buf, 4), Buffer.writable(buf, 1)); // 3-5
        assertEquals(a, take().head());
        assertEquals(b, take().head());
        assertEquals(c, take().head());
        f.queue.complete(b, 32);
        f.queue.publish(); // B's used descriptor lands in slot 0, over A's head
        assertEquals(new Used(b, 32), f.driver.awaitUsed(NOW));

        VirtQueue next = f.restart(region, STALE_BASE, 0);
        assertTrue(next.position().baseCorrected(), "the frontend's base was stale");
        assertEquals(2, next.position().resubmitPending());
        DescriptorChain ra = next.next();
        assertEquals(a, ra.head());
        assertEquals(2, ra.count());
        assertEquals(16, ra.writableLength());
        next.complete(ra, 16);
        DescriptorChain rc = next.next();
        assertEquals(c, rc.head());
        assertEquals(3, rc.count());
        next.complete(rc, 1);
        assertNull(next.next(), "nothing else in flight, nothing new");
        int d = f.driver.post(Buffer.writable(buf, 8)); // slot 6: where the new backend takes from
        DescriptorChain rd = next.next();
        assertEquals(d, rd.head());
        next.complete(rd, 8);
        next.publish();
        assertEquals(new Used(a, 16), f.driver.awaitUsed(NOW));
        assertEquals(new Used(c, 1), f.driver.awaitUsed(NOW));
        assertEquals(new Used(d, 8), f.driver.awaitUsed(NOW));
        assertEquals(f.driver.availIdx(), next.position().usedIdx());
        assertFalse(next.isBroken());
    }

    @Test
    void shouldResubmitEveryChainOfABatchThatWasNeverPublishedEvenWhenChainsWereTakenInBetween() {
        long buf = f.buffer(64);
        int a = f.driver.post(Buffer.writable(buf, 8));
        int b = f.driver.post(Buffer.writable(buf, 8));
        f.queue.complete(take(), 8); // A: written, not published: the driver never saw it
        f.queue.complete(take(), 8); // B, taken after A's completion: must not take A's record

        VirtQueue next = f.restart(region, STALE_BASE, 0);
        assertEquals(2, next.position().resubmitPending());
        assertEquals(a, next.next().head());
        assertEquals(b, next.next().head());
    }

    @Test
    void shouldHideTheUsedDescriptorsADeadBackendWroteBeyondWhatItPublished() {
        long buf = f.buffer(64);
        int a = f.driver.post(Buffer.writable(buf, 8));
        int b = f.driver.post(Buffer.writable(buf, 8));
        f.queue.complete(take(), 8); // A: the batch's first, written at the publish that never came
        f.queue.complete(take(), 8); // B: its used descriptor already in slot 1

        VirtQueue next = f.restart(region, STALE_BASE, 0);
        serveAndPublish(next, a);
        assertFalse(f.driver.hasUsed(), "B is still in flight in the new backend: the dead one's descriptor for it is hidden");
        serveAndPublish(next, b);
        assertFalse(f.driver.hasUsed(), "each once");
    }

    /** Takes the next chain of {@code q}, which must be {@code id}, uses it with 8 bytes and publishes; the driver gets it. */
    private void serveAndPublish(VirtQueue q, int id) {
        DescriptorChain c = q.next();
        assertEquals(id, c.head());
        q.complete(c, 8);
        q.publish();
        assertEquals(new Used(id, 8), f.driver.awaitUsed(NOW));
    }

    /** Takes two chains, uses both in one published batch; returns the region as it was before the publish. */
    private byte[] publishTwoRememberingTheRegionBefore() {
        long buf = f.buffer(64);
        f.driver.post(Buffer.writable(buf, 8));
        f.driver.post(Buffer.writable(buf, 8));
        DescriptorChain first = take();
        int a = first.head();
        int b = take().head();
        byte[] before = region.toArray(ValueLayout.JAVA_BYTE);
        f.queue.complete(a, 8);
        f.queue.complete(b, 8);
        f.queue.publish();
        return before;
    }

    /** The region as a backend leaves it when it dies after the new used index, before the old one. */
    private void crashMidPublish(byte[] before) {
        MemorySegment was = MemorySegment.ofArray(before);
        region.set(U16, OLD_USED_IDX, was.get(U16, OLD_USED_IDX));
        region.set(U16, OLD_FREE_HEAD, was.get(U16, OLD_FREE_HEAD));
        for (int e = 0; e < SIZE; e++) { // the in-flight marks not cleared yet
            region.set(ValueLayout.JAVA_BYTE, DESC + 32L * e, was.get(ValueLayout.JAVA_BYTE, DESC + 32L * e));
        }
        assertEquals(2, region.get(U16, USED_IDX), "the new used index is there");
    }

    @Test
    void shouldCommitABatchWhoseFirstUsedDescriptorReachedTheRing() {
        crashMidPublish(publishTwoRememberingTheRegionBefore());
        VirtQueue next = f.restart(region, STALE_BASE, 0);
        assertEquals(0, next.position().resubmitPending(), "the driver has both: nothing to resubmit");
        assertEquals(2 | 1 << 15, next.position().usedIdx());
        assertEquals(2 | 1 << 15, next.position().lastAvailIdx());
    }

    @Test
    void shouldRollBackABatchWhoseFirstUsedDescriptorNeverReachedTheRing() {
        crashMidPublish(publishTwoRememberingTheRegionBefore());
        f.driver.writePackedDescriptor(0, 0, 0, 0, io.jvhost.testkit.frontend.DriverQueue.F_AVAIL); // flags as made available
        VirtQueue next = f.restart(region, STALE_BASE, 0);
        assertEquals(2, next.position().resubmitPending(), "the driver saw neither: both again");
        assertEquals(0 | 1 << 15, next.position().usedIdx());
        assertEquals(2 | 1 << 15, next.position().lastAvailIdx());
    }

    @Test
    void shouldGiveTheFrontendsBaseTheLastWordOnARegionNeverUsed() {
        f.driver.startAt(5); // slot 5 of the second lap: a migrated guest, say
        VirtQueue next = f.restart(region, 5 | 5L << 16, 0);
        assertFalse(next.position().baseCorrected());
        assertEquals(5, next.position().lastAvailIdx());
        int id = f.driver.post(Buffer.writable(f.buffer(8), 8));
        DescriptorChain c = next.next();
        assertEquals(id, c.head());
        next.complete(c, 8);
        next.publish();
        assertEquals(new Used(id, 8), f.driver.awaitUsed(NOW));
        assertEquals(6, region.get(U16, OLD_USED_IDX), "the region follows the ring from there");
    }

    @Test
    void shouldPutChainsGivenBackOnTheFreeListAndNotResubmitThem() {
        long buf = f.buffer(64);
        f.driver.post(Buffer.writable(buf, 8));
        int b = f.driver.post(Buffer.writable(buf, 8));
        take();
        take();
        f.queue.rewind(1);
        assertEquals(b, take().head(), "taken again after the rewind");
        f.queue.rewind(2);

        VirtQueue next = f.restart(region, STALE_BASE, 0);
        assertEquals(0, next.position().resubmitPending(), "given back: not in flight");
        assertEquals(0 | 1 << 15, next.position().lastAvailIdx());
        assertTrue(region.get(U16, FREE_HEAD) < SIZE);
    }
}
