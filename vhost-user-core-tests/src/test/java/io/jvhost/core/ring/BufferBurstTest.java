package io.jvhost.core.ring;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Duration;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * A receive burst takes the chains that are one writable buffer each, all at once, and completes
 * them in one pass; whatever else the driver posted ends the burst, and the ordinary
 * {@link VirtQueue#next()} takes and judges it. Split and packed rings alike.
 */
class BufferBurstTest {
    private static final Duration WAIT = Duration.ofSeconds(1);

    /** A burst for frames that each need {@code need} bytes. */
    private static int take(BufferBurst b, VirtQueue q, long need) {
        long[] lengths = new long[BufferBurst.MAX];
        java.util.Arrays.fill(lengths, need);
        return b.takeWritable(q, BufferBurst.MAX, 0, lengths, 0);
    }

    private static void writeInto(BufferBurst b, int i, int length, int seed) {
        MemorySegment m = b.memory(i);
        for (int k = 0; k < length; k++) {
            m.set(JAVA_BYTE, b.offset(i) + k, (byte) (seed + k));
        }
        b.written(i, length);
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldFillEveryOneBufferChainOfABurstAndUseThemInOrderWithTheirLengths(DriverQueue.Layout layout) throws Exception {
        try (RingFixture f = RingFixture.of(layout, 16)) {
            f.configure(f.freshBase(), VirtQueue.INDIRECT);
            long[] gpas = new long[5];
            int[] ids = new int[5];
            for (int i = 0; i < 5; i++) {
                gpas[i] = f.buffer(128);
                ids[i] = f.driver.post(Buffer.writable(gpas[i], 128));
            }
            BufferBurst b = new BufferBurst();
            assertEquals(5, take(b, f.queue, 100));
            for (int i = 0; i < 5; i++) {
                assertEquals(128, b.length(i));
                writeInto(b, i, 60 + i, 10 * i);
            }
            b.complete(5);
            f.queue.publish();
            for (int i = 0; i < 5; i++) {
                Used u = f.driver.awaitUsed(WAIT);
                assertNotNull(u, "used element " + i);
                assertEquals(ids[i], u.id());
                assertEquals(60 + i, u.length());
                assertEquals((byte) (10 * i + 59 + i), f.ram.at(gpas[i], 128).get(JAVA_BYTE, 59 + i), "the bytes landed in buffer " + i);
            }
            assertEquals(5, f.queue.counters().chains);
            assertEquals(60 + 61 + 62 + 63 + 64, f.queue.counters().bytesWritten);
            assertNull(f.queue.next(), "nothing left");
        }
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldEndTheBurstBeforeAChainedOrShortOrReadableBufferAndLeaveItToNext(DriverQueue.Layout layout) throws Exception {
        try (RingFixture f = RingFixture.of(layout, 16)) {
            f.configure(f.freshBase(), VirtQueue.INDIRECT);
            int first = f.driver.post(Buffer.writable(f.buffer(128), 128));
            int chained = f.driver.post(Buffer.writable(f.buffer(8), 8), Buffer.writable(f.buffer(120), 120));
            int shortOne = f.driver.post(Buffer.writable(f.buffer(64), 64));
            int readable = f.driver.post(Buffer.readable(f.buffer(128), 128));
            int last = f.driver.post(Buffer.writable(f.buffer(128), 128));
            BufferBurst b = new BufferBurst();

            assertEquals(1, take(b, f.queue, 100));
            assertEquals(first, b.ids[0]);
            b.complete(1);
            assertEquals(0, take(b, f.queue, 100), "a chain of two buffers is next");
            DescriptorChain c = f.queue.next();
            assertEquals(chained, c.head());
            f.queue.complete(c, 100);
            assertEquals(0, take(b, f.queue, 100), "a buffer shorter than asked is next");
            assertEquals(1, take(b, f.queue, 64), "which a burst for shorter frames takes");
            assertEquals(shortOne, b.ids[0]);
            b.complete(1);
            assertEquals(0, take(b, f.queue, 1), "a readable buffer is next");
            c = f.queue.next();
            assertEquals(readable, c.head());
            f.queue.complete(c, 0);
            assertEquals(1, take(b, f.queue, 100));
            assertEquals(last, b.ids[0]);
            b.complete(1);
            f.queue.publish();
            int[] expected = {first, chained, shortOne, readable, last};
            for (int id : expected) {
                assertEquals(id, f.driver.awaitUsed(WAIT).id());
            }
        }
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldGiveBackTheChainsABurstDidNotUseSoTheyAreTakenAgain(DriverQueue.Layout layout) throws Exception {
        try (RingFixture f = RingFixture.of(layout, 8)) {
            f.configure(f.freshBase(), 0);
            int[] ids = new int[4];
            for (int i = 0; i < 4; i++) {
                ids[i] = f.driver.post(Buffer.writable(f.buffer(64), 64));
            }
            BufferBurst b = new BufferBurst();
            assertEquals(4, take(b, f.queue, 64));
            writeInto(b, 0, 64, 1);
            b.complete(1);
            assertEquals(1, f.queue.counters().chains, "three given back");
            assertFalse(f.queue.hasAvailable(), "given back for lack of frames: not new work until the driver adds some");
            assertEquals(3, take(b, f.queue, 64), "but the next burst takes them again");
            assertEquals(ids[1], b.ids[0]);
            assertEquals(ids[3], b.ids[2]);
            b.complete(3);
            f.queue.publish();
            for (int id : ids) {
                assertEquals(id, f.driver.awaitUsed(WAIT).id());
            }
        }
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldTakeNoBurstWhileMigratingSoEveryWriteIsLogged(DriverQueue.Layout layout) throws Exception {
        try (RingFixture f = RingFixture.of(layout, 8); Arena arena = Arena.ofConfined()) {
            f.queue.dirtyLog(new DirtyLog(arena.allocate(4096, 8)), f.descGpa, f.usedGpa);
            f.configure(f.freshBase(), 0);
            f.driver.post(Buffer.writable(f.buffer(64), 64));
            BufferBurst b = new BufferBurst();
            assertEquals(0, take(b, f.queue, 64));
            assertTrue(f.queue.hasAvailable(), "left for next(), which logs what it writes");
            assertNotNull(f.queue.next());
        }
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldNotTakeABufferOutsideGuestMemoryAndLeaveItToNextWhichRefusesIt(DriverQueue.Layout layout) throws Exception {
        try (RingFixture f = RingFixture.of(layout, 8)) {
            f.configure(f.freshBase(), 0);
            int bad = f.driver.post(Buffer.writable((1 << 20) - 32, 64)); // runs past the end of guest RAM
            BufferBurst b = new BufferBurst();
            assertEquals(0, take(b, f.queue, 64));
            assertNull(f.queue.next(), "the parser refuses it and completes it empty");
            f.queue.publish();
            Used u = f.driver.awaitUsed(WAIT);
            assertEquals(bad, u.id());
            assertEquals(0, u.length());
            assertEquals(1, f.queue.counters().chainsRejected());
        }
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldTakeEachChainForItsOwnFrameSoALongFrameEndsTheBurstOnlyWhereItIs(DriverQueue.Layout layout) throws Exception {
        try (RingFixture f = RingFixture.of(layout, 16)) {
            f.configure(f.freshBase(), 0);
            for (int i = 0; i < 6; i++) {
                f.driver.post(Buffer.writable(f.buffer(512), 512));
            }
            long[] frames = {60, 500, 60, 1514, 60, 60};
            BufferBurst b = new BufferBurst();
            assertEquals(3, b.takeWritable(f.queue, 64, 12, frames, 0), "header + 500 fits 512; header + 1514 does not");
            b.complete(3);
            assertEquals(0, b.takeWritable(f.queue, 64, 12, frames, 3), "the long frame is next: no burst");
            assertEquals(2, b.takeWritable(f.queue, 64, 12, frames, 4), "after it, the rest go together");
            b.complete(2);
            assertEquals(1, b.takeWritable(f.queue, 1, 0, new long[] {1}, 0), "max 1 takes one");
            b.complete(1);
        }
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldRefuseToTakeABurstBeforeTheLastIsCompletedOrToCompleteMoreThanItTook(DriverQueue.Layout layout)
            throws Exception {
        try (RingFixture f = RingFixture.of(layout, 8)) {
            f.configure(f.freshBase(), 0);
            f.driver.post(Buffer.writable(f.buffer(64), 64));
            f.driver.post(Buffer.writable(f.buffer(64), 64));
            BufferBurst b = new BufferBurst();
            org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> b.complete(1),
                    "nothing taken yet");
            assertEquals(2, take(b, f.queue, 64));
            org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class, () -> take(b, f.queue, 64));
            org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> b.complete(3));
            b.complete(2);
            b.complete(0);
        }
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldGiveBackABurstThatRanPastTheEndOfTheRingToWhereItWasTakenAndLetNextRewindItsOwnChainAfter(
            DriverQueue.Layout layout) throws Exception {
        try (RingFixture f = RingFixture.of(layout, 8)) {
            f.configure(f.freshBase(), 0);
            BufferBurst b = new BufferBurst();
            for (int i = 0; i < 6; i++) { // the ring's first six slots used: the next burst crosses its end
                f.driver.post(Buffer.writable(f.buffer(64), 64));
                assertEquals(1, take(b, f.queue, 64));
                b.complete(1);
                f.queue.publish();
                assertNotNull(f.driver.awaitUsed(WAIT));
            }
            int[] ids = new int[4];
            for (int i = 0; i < 4; i++) {
                ids[i] = f.driver.post(Buffer.writable(f.buffer(64), 64));
            }
            assertEquals(4, take(b, f.queue, 64));
            writeInto(b, 0, 64, 1);
            b.complete(1);
            assertEquals(3, take(b, f.queue, 64), "the three given back, taken again across the end");
            assertArrayEquals(new int[] {ids[1], ids[2], ids[3]}, java.util.Arrays.copyOf(b.ids, 3));
            b.complete(0);
            DescriptorChain c = f.queue.next();
            assertEquals(ids[1], c.head(), "next() after a burst given back takes its first chain");
            f.queue.rewind(1);
            c = f.queue.next();
            assertEquals(ids[1], c.head(), "and rewinds it without the burst in the way");
            f.queue.complete(c, 64);
            for (int i = 2; i < 4; i++) {
                f.queue.complete(f.queue.next(), 64);
            }
            f.queue.publish();
            for (int id : ids) {
                assertEquals(id, f.driver.awaitUsed(WAIT).id());
            }
            assertNull(f.queue.next(), "nothing left");
        }
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldShowExposedBuffersToAPollingDriverAtOnceWhileThePublishStillCountsThemForOneInterrupt(
            DriverQueue.Layout layout) throws Exception {
        try (RingFixture f = RingFixture.of(layout, 8)) {
            f.configure(f.freshBase(), 0);
            int[] ids = new int[4];
            for (int i = 0; i < 4; i++) {
                ids[i] = f.driver.post(Buffer.writable(f.buffer(64), 64));
            }
            long[] lengths = new long[BufferBurst.MAX];
            BufferBurst b = new BufferBurst();
            assertEquals(2, b.takeWritable(f.queue, 2, 0, lengths, 0));
            writeInto(b, 0, 10, 1);
            writeInto(b, 1, 11, 2);
            b.complete(2);
            b.expose();
            assertEquals(ids[0], f.driver.awaitUsed(WAIT).id(), "exposed: the driver sees it before the publish");
            Used second = f.driver.awaitUsed(WAIT);
            assertEquals(ids[1], second.id());
            assertEquals(11, second.length());
            assertEquals(0, f.driver.takeInterrupts(), "no interrupt for an exposure");

            assertEquals(2, b.takeWritable(f.queue, 2, 0, lengths, 0));
            writeInto(b, 0, 12, 3);
            writeInto(b, 1, 13, 4);
            b.complete(2);
            assertNull(f.driver.awaitUsed(java.time.Duration.ZERO), "completed, neither exposed nor published: not seen");
            f.queue.publish();
            assertEquals(ids[2], f.driver.awaitUsed(WAIT).id());
            assertEquals(ids[3], f.driver.awaitUsed(WAIT).id());
            assertEquals(1, f.driver.takeInterrupts(), "one interrupt for all four, at the publish");
            assertEquals(1, f.queue.counters().notificationsSent);
        }
    }

    @org.junit.jupiter.api.Test
    void shouldStopAPackedBurstAtAnIdAlreadyInFlightAndLeaveItToNextWhichBreaksTheQueue() throws Exception {
        try (RingFixture f = RingFixture.packed(8)) {
            f.configure(f.freshBase(), 0);
            long buf = f.buffer(64);
            f.driver.writePackedDescriptor(0, buf, 64, 3, DriverQueue.F_WRITE | DriverQueue.availableFlags(1));
            f.driver.writePackedDescriptor(1, buf, 64, 3, DriverQueue.F_WRITE | DriverQueue.availableFlags(1));
            BufferBurst b = new BufferBurst();
            assertEquals(1, take(b, f.queue, 64), "the second descriptor names id 3 again");
            assertNull(f.queue.next(), "next() judges it");
            assertTrue(f.queue.isBroken(), "an id in flight twice breaks the ring");
        }
    }

    @ParameterizedTest
    @EnumSource(DriverQueue.Layout.class)
    void shouldReadABurstOfOneBufferChainsAndUseEachWithNothingWritten(DriverQueue.Layout layout) throws Exception {
        try (RingFixture f = RingFixture.of(layout, 16)) {
            f.configure(f.freshBase(), 0);
            int[] ids = new int[4];
            for (int i = 0; i < 4; i++) {
                ids[i] = f.driver.post(Buffer.readable(f.buffer(40 + i, 7 * i), 40 + i));
            }
            f.driver.post(Buffer.writable(f.buffer(64), 64));
            BufferBurst b = new BufferBurst();
            assertEquals(4, b.takeReadable(f.queue, 64, 12), "the writable chain ends the burst");
            for (int i = 0; i < 4; i++) {
                assertEquals(40 + i, b.length(i));
                assertEquals((byte) (7 * i + 39 + i), b.memory(i).get(JAVA_BYTE, b.offset(i) + 39 + i), "buffer " + i + " as posted");
            }
            b.complete(4);
            f.queue.publish();
            for (int id : ids) {
                assertEquals(new Used(id, 0), f.driver.awaitUsed(WAIT));
            }
            assertEquals(40 + 41 + 42 + 43, f.queue.counters().bytesRead);
            assertEquals(4, f.queue.counters().chains);
        }
    }

    @org.junit.jupiter.api.Test
    void shouldUseAReadBurstWithOneUsedElementWhenInOrder() throws Exception {
        try (RingFixture f = RingFixture.of(DriverQueue.Layout.SPLIT, 16)) {
            f.driver.inOrder(true);
            f.configure(0, VirtQueue.IN_ORDER);
            f.queue.completesInOrder(true); // as a NIC's queues do: no reordering tracker, so bursts are taken
            int last = 0;
            for (int i = 0; i < 4; i++) {
                last = f.driver.post(Buffer.readable(f.buffer(60), 60));
            }
            BufferBurst b = new BufferBurst();
            assertEquals(4, b.takeReadable(f.queue, 64, 12));
            b.complete(4);
            f.queue.publish();
            assertEquals(4, f.driver.usedIdx(), "the used index moves past all four");
            assertEquals(last, f.usedId(0), "one element, naming the last chain, stands for them (virtio 1.2 2.7.9)");
        }
    }

    @org.junit.jupiter.api.Test
    void shouldStopABurstAtAHeadOutOfRangeWithoutReadingPastTheTableAndLeaveItToNextWhichBreaksTheRing() throws Exception {
        try (RingFixture f = RingFixture.of(DriverQueue.Layout.SPLIT, 8)) {
            f.configure(0, 0);
            f.driver.post(Buffer.readable(f.buffer(60), 60));
            f.driver.makeAvailable(8 + 3); // no such descriptor: the table has 8
            BufferBurst b = new BufferBurst();
            assertEquals(1, b.takeReadable(f.queue, 64, 0), "the burst ends before the bad head");
            b.complete(1);
            assertEquals(0, b.takeReadable(f.queue, 64, 0));
            assertNull(f.queue.next());
            assertTrue(f.queue.isBroken());
        }
    }
}
