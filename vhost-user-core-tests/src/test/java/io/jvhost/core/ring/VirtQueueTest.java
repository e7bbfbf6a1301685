package io.jvhost.core.ring;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Ring positions, used elements and notification suppression of a healthy queue. */
class VirtQueueTest {
    private RingFixture f;

    @AfterEach
    void tearDown() {
        if (f != null) {
            f.close();
        }
    }

    private RingFixture fixture(int size, int base, boolean eventIdx) throws Exception {
        f = RingFixture.of(size);
        f.setUsedIdxInRing(base);
        f.driver.setAvailIdx(base);
        return f.configure(base, eventIdx, true);
    }

    /** Takes and completes one chain with {@code length}; returns its head. */
    private int serveOne(long length) {
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        f.queue.complete(c, length);
        return c.head();
    }

    // ---- used ring ----

    @Test
    void shouldUseOneElementForARunOfChainsWithNothingWrittenWhenInOrder() throws Exception {
        f = RingFixture.of(8);
        f.driver.inOrder(true);
        f.configure(0, VirtQueue.IN_ORDER);
        long buf = f.buffer(16);
        int[] heads = new int[3];
        for (int i = 0; i < 3; i++) {
            heads[i] = f.driver.post(Buffer.readable(buf, 16));
        }
        int rx = f.driver.post(Buffer.writable(buf, 16));
        for (int i = 0; i < 3; i++) {
            serveOne(0);
        }
        f.queue.publish();
        assertEquals(3, f.driver.usedIdx(), "the index moves by the whole run");
        assertEquals(heads[2], f.usedId(0), "one element, at the run's start, naming its last chain");
        serveOne(12);
        f.queue.publish();
        assertEquals(rx, f.usedId(3), "a chain with room to write gets its own element");
        assertEquals(12, f.usedLength(3));
        for (int h : heads) {
            assertEquals(new DriverQueue.Used(h, 0), f.driver.awaitUsed(java.time.Duration.ofSeconds(1)));
        }
        assertEquals(new DriverQueue.Used(rx, 12), f.driver.awaitUsed(java.time.Duration.ofSeconds(1)));
    }

    @Test
    void shouldKeepInOrderRunsForADeviceThatCompletesInTakeOrderWithoutTheTracker() throws Exception {
        f = RingFixture.of(8);
        f.driver.inOrder(true);
        f.queue.completesInOrder(true); // as virtio-net's queues declare
        f.configure(0, VirtQueue.IN_ORDER);
        long buf = f.buffer(16);
        int[] heads = new int[3];
        for (int i = 0; i < 3; i++) {
            heads[i] = f.driver.post(Buffer.readable(buf, 16));
        }
        int rx = f.driver.post(Buffer.writable(buf, 16));
        int rx2 = f.driver.post(Buffer.writable(buf, 16));
        for (int i = 0; i < 3; i++) {
            serveOne(0);
        }
        f.queue.publish();
        assertEquals(3, f.driver.usedIdx());
        assertEquals(heads[2], f.usedId(0), "the quiet run still takes one element");
        assertNotNull(f.queue.next());
        f.queue.rewind(1); // given back, as a receive that runs short of buffers mid-frame does
        assertEquals(rx, serveOne(12), "the chain given back comes again");
        f.queue.complete(f.queue.next().head(), 7); // by head, as a frame over several chains completes
        f.queue.publish();
        assertEquals(5, f.driver.usedIdx());
        assertEquals(rx, f.usedId(3));
        assertEquals(12, f.usedLength(3));
        assertEquals(rx2, f.usedId(4));
        assertEquals(7, f.usedLength(4));
        for (int h : heads) {
            assertEquals(new DriverQueue.Used(h, 0), f.driver.awaitUsed(java.time.Duration.ofSeconds(1)));
        }
        assertEquals(new DriverQueue.Used(rx, 12), f.driver.awaitUsed(java.time.Duration.ofSeconds(1)));
        assertEquals(new DriverQueue.Used(rx2, 7), f.driver.awaitUsed(java.time.Duration.ofSeconds(1)));
        assertEquals(0, f.queue.counters().handlerExceptions, "no completion refused: nothing was tracked");
    }

    @Test
    void shouldHoldBackACompletionThatOvertakesAnEarlierChainWhenInOrder() throws Exception {
        f = RingFixture.of(8);
        f.driver.inOrder(true);
        f.configure(0, VirtQueue.IN_ORDER);
        long buf = f.buffer(16);
        int a = f.driver.post(Buffer.writable(buf, 16));
        int b = f.driver.post(Buffer.writable(buf, 16));
        int headA = f.queue.next().head();
        int headB = f.queue.next().head();
        f.queue.complete(headB, 2);
        f.queue.publish();
        assertEquals(0, f.driver.usedIdx(), "B waits for A");
        f.queue.complete(headA, 1);
        f.queue.publish();
        assertEquals(2, f.driver.usedIdx());
        assertEquals(a, f.usedId(0));
        assertEquals(b, f.usedId(1));
        assertEquals(2, f.usedLength(1));
    }

    @Test
    void shouldIgnoreAnInOrderCompletionForAChainNotInFlight() throws Exception {
        f = RingFixture.of(8);
        f.configure(0, VirtQueue.IN_ORDER);
        f.queue.complete(5, 10);
        f.queue.complete(-1, 10);
        f.queue.publish();
        assertEquals(0, f.driver.usedIdx());
        assertEquals(2, f.queue.counters().handlerExceptions);
    }


    @Test
    void shouldPublishUsedElementsAndIndexOnlyAtPublish() throws Exception {
        fixture(8, 0, false);
        int a = f.driver.post(Buffer.writable(f.buffer(64), 64));
        int b = f.driver.post(Buffer.readable(f.buffer(8), 8), Buffer.writable(f.buffer(32), 32));
        assertEquals(a, serveOne(64));
        assertEquals(b, serveOne(17));
        assertNull(f.queue.next());
        assertEquals(0, f.driver.usedIdx(), "nothing visible before publish");
        assertEquals(2, f.queue.position().usedIdx());
        f.queue.publish();
        assertEquals(2, f.driver.usedIdx());
        assertEquals(a, f.usedId(0));
        assertEquals(64, f.usedLength(0));
        assertEquals(b, f.usedId(1));
        assertEquals(17, f.usedLength(1));
        assertEquals(81, f.queue.counters().bytesWritten);
        assertEquals(2, f.queue.position().lastAvailIdx());
    }

    @Test
    void shouldCompleteOutOfOrder() throws Exception {
        fixture(8, 0, false);
        long buf = f.buffer(16);
        f.driver.post(Buffer.writable(buf, 16));
        f.driver.post(Buffer.writable(buf, 16));
        DescriptorChain first = f.queue.next();
        assertNotNull(first);
        int firstHead = first.head();
        DescriptorChain second = f.queue.next();
        assertNotNull(second);
        int secondHead = second.head();
        f.queue.complete(secondHead, 2);
        f.queue.complete(firstHead, 1);
        f.queue.publish();
        assertEquals(secondHead, f.usedId(0));
        assertEquals(firstHead, f.usedId(1));
        assertEquals(1, f.usedLength(1));
    }

    @Test
    void shouldResumeTheUsedIndexFromTheRing() throws Exception {
        fixture(8, 0, false);
        f.setUsedIdxInRing(1234);
        f.driver.setAvailIdx(1234);
        f.configure(1234, false, true);
        assertEquals(1234, f.queue.position().usedIdx());
        assertEquals(1234, f.queue.position().lastAvailIdx());
        f.driver.post(Buffer.writable(f.buffer(16), 16));
        serveOne(5);
        f.queue.publish();
        assertEquals(1235, f.driver.usedIdx());
        assertEquals(5, f.usedLength(1234));
    }

    @Test
    void shouldCrossTheSixteenBitIndexWrapFromBase65530() throws Exception {
        fixture(8, 65530, false);
        long buf = f.buffer(64);
        int served = 0;
        int[] batches = {4, 3, 8, 1, 5}; // 65530 -> 65534 -> 1 -> 9 -> 10 -> 15
        for (int batch : batches) {
            int[] heads = new int[batch];
            for (int i = 0; i < batch; i++) {
                heads[i] = f.driver.post(Buffer.writable(buf, 64));
            }
            for (int i = 0; i < batch; i++) {
                DescriptorChain c = f.queue.next();
                assertNotNull(c, "chain " + (served + i));
                assertEquals(heads[i], c.head());
                f.queue.complete(c, served + i);
            }
            assertNull(f.queue.next());
            f.queue.publish();
            int usedBefore = (65530 + served) & 0xFFFF;
            served += batch;
            assertEquals((65530 + served) & 0xFFFF, f.driver.usedIdx());
            assertEquals((65530 + served) & 0xFFFF, f.queue.position().lastAvailIdx());
            for (int i = 0; i < batch; i++) {
                assertEquals(heads[i], f.usedId(usedBefore + i));
                assertEquals(served - batch + i, f.usedLength(usedBefore + i));
            }
        }
        assertEquals(15, f.driver.usedIdx());
        assertFalse(f.queue.isBroken());
        assertEquals(served, f.queue.counters().chains);
    }

    @Test
    void shouldReportAvailableBuffersWithoutConsumingThem() throws Exception {
        fixture(8, 65535, false);
        assertFalse(f.queue.hasAvailable());
        int head = f.driver.post(Buffer.readable(f.buffer(16), 16));
        assertTrue(f.queue.hasAvailable());
        assertTrue(f.queue.hasAvailable());
        assertEquals(head, serveOne(0));
        assertFalse(f.queue.hasAvailable());
        assertEquals(0, f.queue.position().lastAvailIdx());
    }

    @Test
    void shouldRefuseASizeThatIsNotAPowerOfTwoOrRingsThatAreTooSmall() throws Exception {
        fixture(8, 0, false);
        var desc = f.memory.translateHva(f.driver.descHva(), 16L * 8);
        var avail = f.memory.translateHva(f.driver.availHva(), 6 + 2L * 8);
        var used = f.memory.translateHva(f.driver.usedHva(), 6 + 8L * 8);
        assertThrows(IllegalArgumentException.class,
                () -> f.queue.configure(6, desc, avail, used, f.memory, 0, 0, -1));
        assertThrows(IllegalArgumentException.class,
                () -> f.queue.configure(0, desc, avail, used, f.memory, 0, 0, -1));
        assertThrows(IllegalArgumentException.class,
                () -> f.queue.configure(65536, desc, avail, used, f.memory, 0, 0, -1));
        assertThrows(IllegalArgumentException.class,
                () -> f.queue.configure(16, desc, avail, used, f.memory, 0, 0, -1));
        assertThrows(IllegalArgumentException.class,
                () -> f.queue.configure(8, desc, avail.asSlice(0, 5 + 2L * 8), used, f.memory, 0, 0, -1));
        assertThrows(IllegalArgumentException.class,
                () -> f.queue.configure(8, desc, avail, used.asSlice(0, 5 + 8L * 8), f.memory, 0, 0, -1));
    }

    // ---- interrupts without EVENT_IDX ----

    @Test
    void shouldInterruptTheDriverOnPublishWhenNoInterruptIsClear() throws Exception {
        fixture(8, 0, false);
        f.driver.post(Buffer.writable(f.buffer(16), 16));
        f.driver.post(Buffer.writable(f.buffer(16), 16));
        serveOne(1);
        serveOne(1);
        f.queue.publish();
        assertEquals(1, f.driver.takeInterrupts(), "one interrupt per publish, not per element");
        assertEquals(1, f.queue.counters().notificationsSent);
    }

    @Test
    void shouldSuppressTheInterruptWhenTheDriverSetsNoInterrupt() throws Exception {
        fixture(8, 0, false);
        f.driver.setNoInterrupt(true);
        f.driver.post(Buffer.writable(f.buffer(16), 16));
        serveOne(1);
        f.queue.publish();
        assertEquals(1, f.driver.usedIdx());
        assertEquals(0, f.driver.takeInterrupts());
        assertEquals(1, f.queue.counters().notificationsSuppressed);

        f.driver.setNoInterrupt(false);
        f.driver.post(Buffer.writable(f.buffer(16), 16));
        serveOne(1);
        f.queue.publish();
        assertEquals(1, f.driver.takeInterrupts());
    }

    @Test
    void shouldNotInterruptWhenNothingWasCompletedSinceTheLastPublish() throws Exception {
        fixture(8, 0, false);
        f.queue.publish();
        f.driver.post(Buffer.writable(f.buffer(16), 16));
        serveOne(1);
        f.queue.publish();
        f.queue.publish();
        assertEquals(1, f.driver.takeInterrupts());
        assertEquals(1, f.queue.counters().notificationsSent);
        assertEquals(0, f.queue.counters().notificationsSuppressed);
    }

    @Test
    void shouldIgnoreUsedEventWithoutEventIdx() throws Exception {
        fixture(8, 0, false);
        f.driver.setUsedEvent(100);
        f.driver.post(Buffer.writable(f.buffer(16), 16));
        serveOne(1);
        f.queue.publish();
        assertEquals(1, f.driver.takeInterrupts());
    }

    @Test
    void shouldPublishWithoutSignallingWhenThereIsNoCallFd() throws Exception {
        fixture(8, 0, false);
        f.queue.callFd(-1);
        f.driver.post(Buffer.writable(f.buffer(16), 16));
        serveOne(1);
        f.queue.publish();
        assertEquals(1, f.driver.usedIdx());
        assertEquals(0, f.driver.takeInterrupts());
        assertEquals(0, f.queue.counters().notificationsSent);
    }

    // ---- interrupts with EVENT_IDX ----

    @Test
    void shouldInterruptExactlyWhenTheUsedIndexPassesUsedEvent() throws Exception {
        fixture(16, 65500, true);
        int old = 65500;
        int publishes = 0, interrupts = 0;
        // Every batch size with used_event from a few before the old index to past the new one,
        // crossing the 16-bit wrap on the way.
        for (int batch = 1; batch <= 5; batch++) {
            for (int delta = -3; delta <= 7; delta++) {
                int usedEvent = (old + delta) & 0xFFFF;
                f.driver.setUsedEvent(usedEvent);
                for (int i = 0; i < batch; i++) {
                    f.queue.complete(i, 0);
                }
                f.queue.publish();
                int now = (old + batch) & 0xFFFF;
                assertEquals(now, f.driver.usedIdx());
                // The driver asked to be interrupted once used idx moves past used_event: the
                // element at used_event is among those just published.
                boolean expected = ((usedEvent - old) & 0xFFFF) < batch;
                long got = f.driver.takeInterrupts();
                assertEquals(expected ? 1 : 0, got,
                        "old " + old + " new " + now + " used_event " + usedEvent);
                publishes++;
                interrupts += (int) got;
                old = now;
            }
        }
        assertTrue(old < 65500, "the loop crossed the wrap");
        assertEquals(interrupts, f.queue.counters().notificationsSent);
        assertEquals(publishes - interrupts, f.queue.counters().notificationsSuppressed);
    }

    @Test
    void shouldInterruptWhenUsedEventIsTheFirstNewElementAcrossTheWrap() throws Exception {
        fixture(8, 65534, true);
        f.driver.setUsedEvent(65535);
        for (int i = 0; i < 3; i++) {
            f.queue.complete(i, 0);
        }
        f.queue.publish(); // 65534 -> 1 covers 65535
        assertEquals(1, f.driver.usedIdx());
        assertEquals(1, f.driver.takeInterrupts());

        f.driver.setUsedEvent(1); // publishing element 1 (1 -> 2) passes it
        f.queue.complete(0, 0);
        f.queue.publish();
        assertEquals(1, f.driver.takeInterrupts());

        f.driver.setUsedEvent(1); // already passed: no more interrupts until the driver moves it
        f.queue.complete(0, 0);
        f.queue.publish();
        assertEquals(0, f.driver.takeInterrupts());
    }

    @Test
    void shouldIgnoreNoInterruptWithEventIdx() throws Exception {
        fixture(8, 0, true);
        f.driver.setNoInterrupt(true);
        f.driver.setUsedEvent(0);
        f.queue.complete(0, 0);
        f.queue.publish();
        assertEquals(1, f.driver.takeInterrupts());
    }

    // ---- kicks ----

    @Test
    void shouldSetNoNotifyWhenDisablingNotificationsWithoutEventIdx() throws Exception {
        fixture(8, 0, false);
        f.queue.disableNotifications();
        assertEquals(1, f.driver.usedFlags());
        assertFalse(f.queue.enableNotifications());
        assertEquals(0, f.driver.usedFlags());
    }

    @Test
    void shouldReportBuffersThatArrivedWhileNotificationsWereDisabled() throws Exception {
        fixture(8, 0, false);
        f.queue.disableNotifications();
        int head = f.driver.post(Buffer.readable(f.buffer(16), 16));
        assertTrue(f.queue.enableNotifications());
        assertEquals(0, f.driver.usedFlags());
        assertEquals(head, serveOne(0));
        assertFalse(f.queue.enableNotifications());
    }

    @Test
    void shouldReportBuffersTakenLaterThanTheLastRead() throws Exception {
        fixture(8, 0, false);
        int head = f.driver.post(Buffer.readable(f.buffer(16), 16));
        assertTrue(f.queue.hasAvailable());
        f.driver.post(Buffer.readable(f.buffer(16), 16));
        assertEquals(head, serveOne(0));
        assertTrue(f.queue.enableNotifications(), "the second chain arrived after the cached index");
        serveOne(0);
        assertFalse(f.queue.enableNotifications());
    }

    /**
     * Chains given back (a frame that found too few buffers) and taken again later, with no look
     * at the ring in between, leave no trace: the kick asked for when the queue runs dry names the
     * next index, not the one of the give-back, which the driver has passed (it would never kick).
     */
    @Test
    void shouldAskForAKickAtTheNextIndexOnceChainsGivenBackWereTakenAgain() throws Exception {
        fixture(8, 0, true);
        long buf = f.buffer(16);
        for (int i = 0; i < 3; i++) {
            f.driver.post(Buffer.writable(buf, 16));
        }
        for (int i = 0; i < 3; i++) {
            assertNotNull(f.queue.next());
        }
        f.queue.rewind(3);
        f.driver.post(Buffer.writable(buf, 16));
        f.driver.post(Buffer.writable(buf, 16));
        for (int i = 0; i < 5; i++) {
            f.queue.complete(f.queue.next(), 0);
        }
        assertNull(f.queue.next());
        assertFalse(f.queue.enableNotifications());
        assertEquals(5, f.driver.availEvent(), "kick me when index 5 is made available");
    }

    @Test
    void shouldWriteAvailEventWhenEnablingNotificationsWithEventIdx() throws Exception {
        fixture(8, 65534, true);
        assertFalse(f.queue.enableNotifications());
        assertEquals(65534, f.driver.availEvent());
        long buf = f.buffer(16);
        for (int i = 0; i < 3; i++) {
            f.driver.post(Buffer.readable(buf, 16));
        }
        f.queue.disableNotifications();
        assertEquals(0, f.driver.usedFlags(), "flags are not used for suppression with EVENT_IDX");
        assertEquals(65534, f.driver.availEvent());
        for (int i = 0; i < 3; i++) {
            serveOne(0);
        }
        assertFalse(f.queue.enableNotifications());
        assertEquals(1, f.driver.availEvent(), "avail_event is the next index the device will read");
        assertEquals(0, f.driver.usedFlags());

        f.driver.post(Buffer.readable(buf, 16));
        assertTrue(f.queue.enableNotifications());
        assertEquals(1, f.driver.availEvent());
    }
    @Test
    void shouldAskForNoKickAndReportNoWorkForPostedBuffersOfAnOnDemandQueueUntilItRunsOut() throws Exception {
        fixture(8, 100, true); // a NIC's receive queue: buffers wait for frames
        f.queue.demand(new Demand(0, System::nanoTime)); // no back-off: this test is about kicks
        f.queue.onDemand(true);
        long buf = f.buffer(64);
        f.driver.post(Buffer.writable(buf, 64));
        f.queue.disableNotifications();
        assertFalse(f.queue.enableNotifications(), "posted receive buffers are no work");
        assertEquals(0, f.driver.availEvent(), "and no kick is asked for");

        assertNotNull(f.queue.next(), "a frame came: the device takes the buffer");
        assertNull(f.queue.next(), "the next frame finds none");
        assertFalse(f.queue.enableNotifications());
        assertEquals(101, f.driver.availEvent(), "run out: a kick is asked for when the driver adds one");
        f.driver.post(Buffer.writable(buf, 64));
        assertTrue(f.queue.enableNotifications(), "a buffer added meanwhile is work for a starved queue");
        assertNotNull(f.queue.next());
        f.driver.post(Buffer.writable(buf, 64));
        assertFalse(f.queue.enableNotifications(), "fed again: posted buffers are no work");

        f.queue.onDemand(false);
        assertTrue(f.queue.enableNotifications(), "a request queue's posted buffers are work");
    }

    /** A queue whose starved back-off is 2 µs on the returned clock (nanoseconds, now[0]); on demand or not. */
    private long[] backingOffFor2Micros(boolean onDemand) throws Exception {
        fixture(8, 0, true);
        long[] now = {1_000};
        f.queue.demand(new Demand(2_000, () -> now[0]));
        f.queue.onDemand(onDemand);
        return now;
    }

    @Test
    void shouldLeaveAStarvedReceiveRingAloneForTheBackOffYetNeverSleepOnBuffersAddedMeanwhile() throws Exception {
        long[] now = backingOffFor2Micros(true);
        long buf = f.buffer(64);
        assertNull(f.queue.next(), "a frame finds no buffer: the device ran out");
        f.driver.post(Buffer.writable(buf, 64));
        now[0] += 1_999;
        assertNull(f.queue.next(), "the driver is still refilling: the ring is not read again yet");
        assertEquals(0, new BufferBurst().takeWritable(f.queue, 8, 12, new long[8], 0), "nor taken in a burst");
        assertTrue(f.queue.enableNotifications(), "but the buffer is work, so the poller does not sleep on it");
        now[0] += 1;
        assertNotNull(f.queue.next(), "once the back-off passed the buffer is taken");
        assertNull(f.queue.next(), "and running out again");
        f.driver.post(Buffer.writable(buf, 64));
        assertNull(f.queue.next(), "backs off again");
    }

    @Test
    void shouldBackOffAfterGivingBackChainsButNotAfterGivingBackNone() throws Exception {
        long[] now = backingOffFor2Micros(true);
        long buf = f.buffer(64);
        f.driver.post(Buffer.writable(buf, 64));
        f.driver.post(Buffer.writable(buf, 64));
        assertNotNull(f.queue.next());
        f.queue.rewind(0);
        assertNotNull(f.queue.next(), "giving back nothing is no sign of running out");
        f.queue.rewind(2);
        assertNull(f.queue.next(), "two chains given back were not enough: wait for more");
        now[0] += 2_000;
        assertNotNull(f.queue.next(), "then they are taken again");
    }

    @Test
    void shouldNeverBackOffOnAQueueWhoseBuffersAreWork() throws Exception {
        backingOffFor2Micros(false); // a transmit or request queue
        long buf = f.buffer(64);
        assertNull(f.queue.next());
        f.driver.post(Buffer.readable(buf, 64));
        assertNotNull(f.queue.next(), "a request is taken as soon as it is there");
    }
}
