package io.jvhost.core.ring;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import static io.jvhost.testkit.frontend.DriverQueue.F_AVAIL;
import static io.jvhost.testkit.frontend.DriverQueue.F_INDIRECT;
import static io.jvhost.testkit.frontend.DriverQueue.F_NEXT;
import static io.jvhost.testkit.frontend.DriverQueue.F_USED;
import static io.jvhost.testkit.frontend.DriverQueue.F_WRITE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The packed ring (virtio 1.2 §2.8) against a packed {@link DriverQueue}: buffer ids, chains and
 * their slots, batches published by one release store of the first used descriptor's flags, laps
 * and wrap counters, indirect tables, event suppression both ways, IN_ORDER batching, and every
 * way a driver can get out of step with the device.
 */
class PackedRingTest {
    private static final Duration NOW = Duration.ofSeconds(1);
    private RingFixture f;

    @AfterEach
    void tearDown() {
        if (f != null) {
            f.close();
        }
    }

    private RingFixture fixture(int size, int options) throws Exception {
        f = RingFixture.packed(size);
        return f.configure(f.freshBase(), options);
    }

    private RingFixture fixture(int size) throws Exception {
        return fixture(size, VirtQueue.INDIRECT);
    }

    private int serveOne(long length) {
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        f.queue.complete(c, length);
        return c.head();
    }

    /** The AVAIL/USED bits of ring slot {@code slot}. */
    private int laps(int slot) {
        return f.driver.slotFlags(slot) & (F_AVAIL | F_USED);
    }

    // ---- chains, ids, used descriptors ----

    @Test
    void shouldNameTheChainByItsBufferIdAndPublishItsUsedDescriptorOnlyAtPublish() throws Exception {
        fixture(8);
        long in = f.buffer(16, 1), out = f.buffer(32);
        int id = f.driver.post(Buffer.readable(in, 16), Buffer.writable(out, 32));
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(id, c.head(), "the buffer id, not a slot");
        assertEquals(2, c.count());
        assertEquals(16, c.readableLength());
        assertEquals(32, c.writableLength());
        assertNull(f.queue.next());
        f.queue.complete(c, 20);
        assertEquals(F_AVAIL, laps(0), "nothing visible before publish");
        f.queue.publish();
        assertEquals(F_AVAIL | F_USED, laps(0), "used in the first lap: both bits set");
        assertEquals(new Used(id, 20), f.driver.awaitUsed(NOW));
        assertTrue((f.driver.slotFlags(0) & F_WRITE) != 0, "WRITE set on a used descriptor with bytes written");
        assertEquals(0x0002_0002L | 0x8000_8000L, f.queue.position().base(), "avail and used at slot 2 in lap 1");
    }

    @Test
    void shouldSkipEveryDescriptorOfAChainWhenItIsUsed() throws Exception {
        fixture(8);
        long buf = f.buffer(64);
        int a = f.driver.post(Buffer.readable(buf, 8), Buffer.readable(buf, 8), Buffer.writable(buf, 8));
        int b = f.driver.post(Buffer.writable(buf, 64));
        assertEquals(a, serveOne(3));
        assertEquals(b, serveOne(64));
        f.queue.publish();
        assertEquals(new Used(a, 3), f.driver.awaitUsed(NOW));
        assertEquals(new Used(b, 64), f.driver.awaitUsed(NOW), "found three slots on, at slot 3");
        assertEquals(4 | 1 << 15, f.queue.position().usedIdx());
    }

    @Test
    void shouldHandTheDriverTheWholeBatchAtThePublishThroughItsFirstDescriptor() throws Exception {
        fixture(8);
        long buf = f.buffer(16);
        for (int i = 0; i < 3; i++) {
            f.driver.post(Buffer.writable(buf, 16));
        }
        for (int i = 0; i < 3; i++) {
            serveOne(i + 1);
        }
        assertEquals(F_AVAIL, laps(0), "the batch's first slot is untouched until the publish");
        assertFalse(f.driver.hasUsed(), "so the driver, which reads from it, sees none of the batch");
        f.queue.publish();
        assertEquals(F_AVAIL | F_USED, laps(0));
        for (int i = 0; i < 3; i++) {
            assertEquals(i + 1, f.driver.awaitUsed(NOW).length());
        }
    }

    @Test
    void shouldUseBuffersOutOfOrderWithIdsDistinctFromSlots() throws Exception {
        fixture(8);
        long buf = f.buffer(16);
        int a = f.driver.post(Buffer.readable(buf, 4), Buffer.writable(buf, 4));
        int b = f.driver.post(Buffer.writable(buf, 16));
        DescriptorChain ca = f.queue.next();
        int headA = ca.head();
        DescriptorChain cb = f.queue.next();
        int headB = cb.head();
        assertEquals(a, headA);
        assertEquals(b, headB);
        f.queue.complete(headB, 16);
        f.queue.complete(headA, 4);
        f.queue.publish();
        assertEquals(new Used(b, 16), f.driver.awaitUsed(NOW), "B used first, at slot 0 where A's head was");
        assertEquals(new Used(a, 4), f.driver.awaitUsed(NOW), "then A at slot 1");
        // The freed ids come back in another order than the slots: the next chains still work.
        int c = f.driver.post(Buffer.writable(buf, 8));
        assertEquals(c, serveOne(8));
        f.queue.publish();
        assertEquals(new Used(c, 8), f.driver.awaitUsed(NOW));
    }

    @Test
    void shouldGoRoundTheRingForManyLapsWithChainsOfMixedLengths() throws Exception {
        fixture(8, VirtQueue.INDIRECT | VirtQueue.EVENT_IDX);
        Random random = new Random(13);
        long in = f.buffer(4096, 7);
        long out = f.ram.allocate(4096, 16);
        int served = 0;
        while (served < 2000) {
            int batch = 1 + random.nextInt(4);
            List<Integer> ids = new ArrayList<>();
            List<Integer> lengths = new ArrayList<>();
            int slots = 0;
            for (int i = 0; i < batch; i++) {
                int pieces = 1 + random.nextInt(2);
                if (slots + pieces + 1 > 8) {
                    break;
                }
                slots += pieces + 1;
                Buffer[] bufs = new Buffer[pieces + 1];
                for (int p = 0; p < pieces; p++) {
                    bufs[p] = Buffer.readable(in + 100 * p, 100);
                }
                int len = 1 + random.nextInt(200);
                bufs[pieces] = Buffer.writable(out, len);
                if (random.nextInt(4) == 0) { // one slot, however many buffers
                    int id = f.driver.indirectChain(bufs);
                    f.driver.makeAvailable(id);
                    ids.add(id);
                } else {
                    ids.add(f.driver.post(bufs));
                }
                lengths.add(len);
            }
            List<DescriptorChain> taken = new ArrayList<>();
            int[] heads = new int[ids.size()];
            for (int i = 0; i < ids.size(); i++) {
                DescriptorChain c = f.queue.next();
                assertNotNull(c, "chain " + served);
                heads[i] = c.head();
                assertEquals(ids.get(i), heads[i]);
                taken.add(c);
            }
            assertNull(f.queue.next());
            boolean reverse = random.nextBoolean();
            for (int i = 0; i < heads.length; i++) {
                int k = reverse ? heads.length - 1 - i : i;
                f.queue.complete(heads[k], lengths.get(k));
            }
            f.queue.publish();
            for (int i = 0; i < heads.length; i++) {
                int k = reverse ? heads.length - 1 - i : i;
                assertEquals(new Used(ids.get(k), lengths.get(k)), f.driver.awaitUsed(NOW), "chain " + (served + i));
            }
            served += heads.length;
        }
        assertFalse(f.queue.isBroken());
        assertEquals(served, f.queue.counters().chains);
        assertEquals(f.driver.availIdx(), f.queue.position().lastAvailIdx(), "device and driver in the same slot and lap");
        assertEquals(f.driver.availIdx(), f.queue.position().usedIdx());
    }

    @Test
    void shouldResumeAtTheBaseWithBothWrapCountersAndReportIt() throws Exception {
        f = RingFixture.packed(8);
        f.driver.startAt(5); // slot 5, wrap counter 0: the second lap
        f.configure(5 | 5 << 16, VirtQueue.INDIRECT);
        assertEquals(5, f.queue.position().lastAvailIdx());
        assertEquals(5 | 5L << 16, f.queue.position().base());
        long buf = f.buffer(16);
        List<Integer> ids = new ArrayList<>();
        for (int i = 0; i < 5; i++) { // slots 5, 6, 7, then 0 and 1 of the third lap
            ids.add(f.driver.post(Buffer.writable(buf, 16)));
            serveOne(i);
        }
        f.queue.publish();
        for (int i = 0; i < 5; i++) {
            assertEquals(new Used(ids.get(i), i), f.driver.awaitUsed(NOW));
        }
        assertEquals(F_AVAIL | F_USED, laps(0), "used in a lap with wrap counter 1");
        assertEquals(0, laps(7), "used in a lap with wrap counter 0: both bits clear");
        assertEquals(2 | 1 << 15 | (2L | 1 << 15) << 16, f.queue.position().base());
    }

    @Test
    void shouldTakeTheUsedPositionFromTheHighHalfOfTheBase() throws Exception {
        f = RingFixture.packed(8);
        f.driver.startAt(3 | 1 << 15);
        f.configure(3 | 1 << 15 | (3L | 1 << 15) << 16, 0);
        assertEquals(3 | 1 << 15, f.queue.position().usedIdx());
        f.configure(3 | 1 << 15, 0); // no used half (DPDK's frontend): used where avail is
        assertEquals(3 | 1 << 15, f.queue.position().usedIdx());
    }

    @Test
    void shouldRefuseABaseThatCannotBeAPositionInTheRing() throws Exception {
        fixture(8);
        assertThrows(IllegalArgumentException.class, () -> f.configure(8 | 1 << 15, 0), "avail beyond the ring");
        assertThrows(IllegalArgumentException.class, () -> f.configure(1 | 1 << 15 | (9L | 1 << 15) << 16, 0),
                "used beyond the ring");
        assertThrows(IllegalArgumentException.class, () -> f.configure(7 | (1L | 1 << 15) << 16, 0),
                "used more than a lap behind");
        assertEquals("packed vring base: avail position 8 not below the queue size 8",
                QueuePosition.baseProblem(8, 8 | 1 << 15, true));
    }

    @Test
    void shouldRunAQueueWhoseSizeIsNotAPowerOfTwo() throws Exception {
        fixture(6);
        long buf = f.buffer(16);
        for (int i = 0; i < 20; i++) {
            int id = f.driver.post(Buffer.readable(buf, 4), Buffer.writable(buf, 4));
            assertEquals(id, serveOne(4));
            f.queue.publish();
            assertEquals(new Used(id, 4), f.driver.awaitUsed(NOW));
        }
        assertFalse(f.queue.isBroken());
    }

    // ---- indirect ----

    @Test
    void shouldReadEveryEntryOfAnIndirectTableInOrder() throws Exception {
        fixture(8);
        byte[] data = new byte[48];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) i;
        }
        long in = f.buffer(48, 0);
        long out = f.ram.allocate(48, 16);
        int id = f.driver.indirectChain(Buffer.readable(in, 16), Buffer.readable(in + 16, 32), Buffer.writable(out, 48));
        f.driver.makeAvailable(id);
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(id, c.head());
        assertEquals(3, c.count());
        MemorySegment copy = MemorySegment.ofArray(new byte[48]);
        assertEquals(48, c.read(0, copy, 0, 48));
        assertEquals(48, c.write(copy, 0, 0, 48));
        f.queue.complete(c, 48);
        f.queue.publish();
        assertEquals(new Used(id, 48), f.driver.awaitUsed(NOW));
        assertArrayEquals(data, f.ram.at(out, 48).toArray(ValueLayout.JAVA_BYTE));
        assertEquals(1 | 1 << 15, f.queue.position().usedIdx(), "an indirect chain takes one slot");
    }

    @Test
    void shouldCompleteEmptyAnIndirectTableWithAnIndirectEntryAndGoOn() throws Exception {
        fixture(8);
        long table = f.ram.allocate(32, 16);
        f.driver.writeIndirect(table, 0, f.buffer(16), 16, 0, 0);
        f.driver.writeIndirect(table, 1, table, 32, F_INDIRECT, 0);
        f.driver.writePackedDescriptor(0, table, 32, 5, F_INDIRECT | F_AVAIL);
        assertNull(f.queue.next());
        assertEquals(1, f.queue.counters().chainsRejected(ChainError.INDIRECT_NESTED));
        f.queue.publish();
        assertEquals(new Used(5, 0), readUsedAt(0));
        assertFalse(f.queue.isBroken());
    }

    @Test
    void shouldRefuseIndirectWithNextButSkipTheWholeChain() throws Exception {
        fixture(8);
        long table = f.ram.allocate(16, 16);
        f.driver.writeIndirect(table, 0, f.buffer(16), 16, 0, 0);
        f.driver.writePackedDescriptor(1, f.buffer(8), 8, 4, F_WRITE | F_AVAIL);
        f.driver.writePackedDescriptor(0, table, 16, 4, F_INDIRECT | F_NEXT | F_AVAIL);
        assertNull(f.queue.next());
        assertEquals(1, f.queue.counters().chainsRejected(ChainError.INDIRECT_WITH_NEXT));
        assertEquals(2 | 1 << 15, f.queue.position().lastAvailIdx(), "both slots of the chain taken");
        f.queue.publish();
        assertEquals(new Used(4, 0), readUsedAt(0));
    }

    @Test
    void shouldRefuseIndirectTablesWithoutTheFeature() throws Exception {
        fixture(8, 0);
        int id = f.driver.indirectChain(Buffer.readable(f.buffer(16), 16));
        f.driver.makeAvailable(id);
        assertNull(f.queue.next());
        assertEquals(1, f.queue.counters().chainsRejected(ChainError.INDIRECT_NOT_NEGOTIATED));
    }

    @Test
    void shouldCompleteEmptyAChainWithAnUnmappedBufferAndKeepGoing() throws Exception {
        fixture(8);
        f.driver.post(Buffer.readable(f.buffer(8), 8), Buffer.writable(1L << 40, 16));
        int good = f.driver.post(Buffer.writable(f.buffer(8), 8));
        assertEquals(good, serveOne(8));
        assertEquals(1, f.queue.counters().chainsRejected(ChainError.BUFFER_UNMAPPED));
        f.queue.publish();
        assertEquals(0, f.driver.awaitUsed(NOW).length());
        assertEquals(new Used(good, 8), f.driver.awaitUsed(NOW));
    }

    private Used readUsedAt(int slot) {
        MemorySegment d = f.ram.at(f.descGpa + 16L * slot, 16);
        return new Used(Short.toUnsignedInt(d.get(DriverQueue.U16, 12)), d.get(DriverQueue.U32, 8));
    }

    // ---- event suppression ----

    @Test
    void shouldAskForKicksAsTheDeviceEventStructureSays() throws Exception {
        fixture(8, VirtQueue.EVENT_IDX);
        f.queue.disableNotifications();
        assertEquals(DriverQueue.EVENT_DISABLE, f.driver.usedFlags());
        f.driver.post(Buffer.writable(f.buffer(8), 8));
        assertTrue(f.queue.enableNotifications(), "a chain is there: no sleeping");
        assertEquals(DriverQueue.EVENT_DESC, f.driver.usedFlags());
        assertEquals(0 | 1 << 15, f.driver.availEvent(), "kick me at the slot I will read next");
        serveOne(8);
        assertFalse(f.queue.enableNotifications());
        assertEquals(1 | 1 << 15, f.driver.availEvent());
    }

    @Test
    void shouldAskForEveryKickWithoutEventIdx() throws Exception {
        fixture(8, 0);
        f.queue.disableNotifications();
        assertEquals(DriverQueue.EVENT_DISABLE, f.driver.usedFlags());
        assertFalse(f.queue.enableNotifications());
        assertEquals(DriverQueue.EVENT_ENABLE, f.driver.usedFlags());
    }

    @Test
    void shouldInterruptAsTheDriverEventStructureSays() throws Exception {
        fixture(8, VirtQueue.EVENT_IDX);
        long buf = f.buffer(8);
        f.driver.setNoInterrupt(true);
        f.driver.post(Buffer.writable(buf, 8));
        serveOne(1);
        f.queue.publish();
        assertEquals(0, f.driver.takeInterrupts(), "DISABLE");
        f.driver.awaitUsed(NOW);

        f.driver.setNoInterrupt(false);
        f.driver.post(Buffer.writable(buf, 8));
        serveOne(1);
        f.queue.publish();
        assertEquals(1, f.driver.takeInterrupts(), "ENABLE");
        f.driver.awaitUsed(NOW);

        // DESC: interrupt when the used descriptor at slot 4 is written; we are at slot 2.
        f.driver.setUsedEvent(4 | 1 << 15);
        for (int i = 0; i < 2; i++) {
            f.driver.post(Buffer.writable(buf, 8));
            serveOne(1);
            f.queue.publish();
            f.driver.awaitUsed(NOW);
        }
        assertEquals(0, f.driver.takeInterrupts(), "slots 2 and 3: before the event");
        f.driver.post(Buffer.writable(buf, 8));
        serveOne(1);
        f.queue.publish();
        assertEquals(1, f.driver.takeInterrupts(), "slot 4: the event");
        f.driver.awaitUsed(NOW);
        f.driver.post(Buffer.writable(buf, 8));
        serveOne(1);
        f.queue.publish();
        assertEquals(0, f.driver.takeInterrupts(), "past it");
    }

    @Test
    void shouldInterruptWhenABatchCrossesTheEventAcrossTheWrap() throws Exception {
        f = RingFixture.packed(8);
        f.driver.startAt(6 | 1 << 15);
        f.configure(6 | 1 << 15 | (6L | 1 << 15) << 16, VirtQueue.EVENT_IDX);
        f.driver.setUsedEvent(1); // slot 1 of the next lap (wrap counter 0)
        long buf = f.buffer(8);
        for (int i = 0; i < 4; i++) { // slots 6, 7, 0, 1
            f.driver.post(Buffer.writable(buf, 8));
            serveOne(1);
        }
        f.queue.publish();
        assertEquals(1, f.driver.takeInterrupts());
    }

    // ---- IN_ORDER ----

    @Test
    void shouldUseOneDescriptorForARunOfChainsWithNothingWrittenInOrder() throws Exception {
        f = RingFixture.packed(8);
        f.driver.inOrder(true);
        f.configure(f.freshBase(), VirtQueue.IN_ORDER);
        long buf = f.buffer(16);
        int[] ids = new int[3];
        for (int i = 0; i < 3; i++) {
            ids[i] = f.driver.post(Buffer.readable(buf, 16), Buffer.readable(buf, 4));
        }
        for (int i = 0; i < 3; i++) {
            serveOne(0);
        }
        f.queue.publish();
        assertEquals(new Used(ids[2], 0), readUsedAt(0), "one used descriptor naming the last chain");
        assertEquals(F_AVAIL, laps(2), "the other slots untouched");
        assertEquals(F_AVAIL, laps(4));
        assertEquals(6 | 1 << 15, f.queue.position().usedIdx(), "all six slots used");
        for (int id : ids) {
            assertEquals(new Used(id, 0), f.driver.awaitUsed(NOW));
        }
    }

    @Test
    void shouldWriteAUsedDescriptorForEveryChainWithRoomToWriteInOrder() throws Exception {
        f = RingFixture.packed(8);
        f.driver.inOrder(true);
        f.configure(f.freshBase(), VirtQueue.IN_ORDER);
        long buf = f.buffer(16);
        int quiet = f.driver.post(Buffer.readable(buf, 16));
        int rx1 = f.driver.post(Buffer.writable(buf, 16));
        int rx2 = f.driver.post(Buffer.writable(buf, 16));
        serveOne(0);
        serveOne(10);
        serveOne(12);
        f.queue.publish();
        assertEquals(new Used(rx1, 10), readUsedAt(0), "the quiet chain folded into the next one's descriptor");
        assertEquals(new Used(rx2, 12), readUsedAt(2));
        assertEquals(new Used(quiet, 0), f.driver.awaitUsed(NOW));
        assertEquals(new Used(rx1, 10), f.driver.awaitUsed(NOW));
        assertEquals(new Used(rx2, 12), f.driver.awaitUsed(NOW));
    }

    @Test
    void shouldHoldBackACompletionThatOvertakesAnEarlierChainInOrder() throws Exception {
        f = RingFixture.packed(8);
        f.driver.inOrder(true);
        f.configure(f.freshBase(), VirtQueue.IN_ORDER);
        long buf = f.buffer(16);
        int a = f.driver.post(Buffer.writable(buf, 16));
        int b = f.driver.post(Buffer.writable(buf, 16));
        DescriptorChain ca = f.queue.next();
        int headA = ca.head();
        int headB = f.queue.next().head();
        f.queue.complete(headB, 2);
        f.queue.publish();
        assertEquals(F_AVAIL, laps(0), "B waits for A");
        f.queue.complete(headA, 1);
        f.queue.publish();
        assertEquals(new Used(a, 1), f.driver.awaitUsed(NOW));
        assertEquals(new Used(b, 2), f.driver.awaitUsed(NOW));
    }

    // ---- rewind ----

    @Test
    void shouldTakeTheSameChainsAgainAfterARewind() throws Exception {
        fixture(8);
        long buf = f.buffer(16);
        int a = f.driver.post(Buffer.writable(buf, 4), Buffer.writable(buf, 4));
        int b = f.driver.post(Buffer.writable(buf, 16));
        f.queue.next();
        f.queue.next();
        f.queue.rewind(2);
        assertEquals(0 | 1 << 15, f.queue.position().lastAvailIdx());
        assertFalse(f.queue.hasAvailable(), "starved: only new buffers count");
        int c = f.driver.post(Buffer.writable(buf, 16));
        assertTrue(f.queue.hasAvailable());
        assertEquals(a, serveOne(8));
        assertEquals(b, serveOne(16));
        assertEquals(c, serveOne(16));
        f.queue.publish();
        assertEquals(new Used(a, 8), f.driver.awaitUsed(NOW));
        assertEquals(new Used(b, 16), f.driver.awaitUsed(NOW));
        assertEquals(new Used(c, 16), f.driver.awaitUsed(NOW));
    }

    // ---- a driver out of step: NEEDS_RESET ----

    private void assertBroken(String what) {
        assertNull(f.queue.next(), what);
        assertTrue(f.queue.isBroken(), what);
        assertEquals(1, f.queue.counters().ringCorruptions);
        assertEquals(1, f.errSignals(), "err eventfd written once");
        byte[] ring = f.ram.at(f.descGpa, 16L * f.size).toArray(ValueLayout.JAVA_BYTE);
        f.queue.complete(0, 1);
        f.queue.publish();
        assertArrayEquals(ring, f.ram.at(f.descGpa, 16L * f.size).toArray(ValueLayout.JAVA_BYTE), "ring untouched");
        assertFalse(f.queue.hasAvailable());
    }

    @Test
    void shouldLatchBrokenWhenAChainRunsIntoASlotOfAnotherLap() throws Exception {
        fixture(8);
        f.driver.writePackedDescriptor(1, f.buffer(8), 8, 0, F_WRITE | F_USED); // the lap before
        f.driver.writePackedDescriptor(0, f.buffer(8), 8, 0, F_NEXT | F_AVAIL);
        assertBroken("wrap counter out of step within a chain");
    }

    @Test
    void shouldLatchBrokenWhenABufferIdIsOutOfRange() throws Exception {
        fixture(8);
        f.driver.writePackedDescriptor(0, f.buffer(8), 8, 8, F_AVAIL);
        assertBroken("id 8 in a ring of 8");
    }

    @Test
    void shouldLatchBrokenWhenABufferIdIsMadeAvailableTwice() throws Exception {
        fixture(8);
        long buf = f.buffer(8);
        f.driver.writePackedDescriptor(0, buf, 8, 3, F_AVAIL);
        f.driver.writePackedDescriptor(1, buf, 8, 3, F_AVAIL);
        assertNotNull(f.queue.next());
        assertBroken("id 3 still in flight");
    }

    @Test
    void shouldLatchBrokenWhenAChainIsLongerThanTheRing() throws Exception {
        fixture(4);
        long buf = f.buffer(8);
        for (int s = 3; s >= 0; s--) {
            f.driver.writePackedDescriptor(s, buf, 8, 0, F_NEXT | F_AVAIL);
        }
        assertBroken("every slot says NEXT");
    }

    @Test
    void shouldKeepTheChainAsReadWhenTheDriverRewritesItsDescriptors() throws Exception {
        fixture(8);
        long a = f.buffer(8), b = f.buffer(16);
        int id = f.driver.post(Buffer.readable(a, 8), Buffer.writable(b, 16));
        DescriptorChain c = f.queue.next();
        f.driver.writePackedDescriptor(1, 1L << 40, 1 << 20, 7, F_INDIRECT | F_AVAIL);
        f.driver.writePackedDescriptor(0, 1L << 40, 1 << 20, 7, F_NEXT | F_AVAIL);
        assertEquals(2, c.count());
        assertEquals(a, c.gpa(0));
        assertEquals(16, c.writableLength());
        f.queue.complete(c, 16);
        f.queue.publish();
        assertEquals(id, readUsedAt(0).id());
        assertFalse(f.queue.isBroken());
    }

    @Test
    void shouldIgnoreASlotThatLooksUsedOrBelongsToAnotherLap() throws Exception {
        fixture(8);
        f.driver.writePackedDescriptor(0, f.buffer(8), 8, 0, F_AVAIL | F_USED);
        assertNull(f.queue.next(), "used, not available");
        f.driver.writePackedDescriptor(0, f.buffer(8), 8, 0, F_USED);
        assertNull(f.queue.next(), "available in the next lap");
        f.driver.writePackedDescriptor(0, f.buffer(8), 8, 0, 0);
        assertNull(f.queue.next(), "used in the lap before");
        assertFalse(f.queue.isBroken());
    }

    @Test
    void shouldIgnoreACompletionForAChainNotInFlight() throws Exception {
        fixture(8);
        f.queue.complete(3, 10);
        f.queue.complete(100, 10);
        f.queue.publish();
        assertEquals(0, f.driver.slotFlags(0), "nothing written");
        assertEquals(2, f.queue.counters().handlerExceptions);
        assertFalse(f.queue.isBroken());
    }
}
