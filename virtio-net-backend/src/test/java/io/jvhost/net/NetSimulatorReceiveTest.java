package io.jvhost.net;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.core.ring.ChainError;
import io.jvhost.net.NetRig.RxChain;
import io.jvhost.net.NetRig.RxFrame;
import io.jvhost.testkit.frontend.DriverQueue.Layout;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

import static io.jvhost.net.NetRig.HEADER;
import static io.jvhost.net.NetRig.LEGACY_HEADER;
import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.MRG_RXBUF;
import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Host to guest: frames a port injects or produces land in the guest's receive ring as virtio 1.2
 * §5.1.6.4 says, with and without mergeable receive buffers, through a real vhost-user socket.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
@ParameterizedClass(name = "{0}")
@EnumSource(Layout.class)
class NetSimulatorReceiveTest {
    /** The guest's rings: the same tests on split and on packed ones. */
    @Parameter
    Layout layout;

    private ScriptedPort port;
    private NetRig rig;

    private void serve(long features) throws Exception {
        serve(features, NetRig.QUEUE_SIZE);
    }

    private void serve(long features, int queueSize) throws Exception {
        port = new ScriptedPort(1);
        rig = NetRig.serve(port, 1, layout).start(features, 1, queueSize);
    }

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
        if (port != null) {
            port.close();
        }
    }

    /** A chain the device gave back without writing anything. */
    private static void assertEmpty(int head, RxChain c) {
        assertEquals(head, c.head(), "which chain came back");
        assertEquals(0, c.usedLength(), "used length of chain " + head);
    }

    // ---- one chain per frame --------------------------------------------------------------------

    @Test
    void shouldLetThePollerSleepWhileReceiveBuffersWaitForFramesAndWakeItForTheNextFrame() throws Exception {
        serve(MODERN | MRG_RXBUF);
        rig.postRx(0, 64, 2048); // what a guest keeps posted: buffers for frames that have not come yet
        Thread.sleep(100); // past the adaptive spin window
        long before = pollerCpu();
        Thread.sleep(500);
        long idle = pollerCpu() - before;
        assertTrue(idle < 100_000_000L, "an idle NIC's poller sleeps though the guest has buffers posted: "
                + idle / 1_000_000 + " ms CPU in 500 ms");
        byte[] f = frame(1000, 9);
        port.produce(0, f); // the port's wakeup fd, as a TAP's readability
        assertArrayEquals(f, rig.awaitFrame(0).frame(), "and a frame wakes it");
    }

    /** CPU time of the rig's poller threads so far, in nanoseconds (java.management by reflection: this module does not read it). */
    private long pollerCpu() throws ReflectiveOperationException {
        Object mx = Class.forName("java.lang.management.ManagementFactory").getMethod("getThreadMXBean").invoke(null);
        java.lang.reflect.Method cpu = Class.forName("java.lang.management.ThreadMXBean").getMethod("getThreadCpuTime", long.class);
        long total = 0;
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith(rig.backend.name() + "-poller-")) {
                total += Math.max(0, (long) cpu.invoke(mx, t.threadId()));
            }
        }
        return total;
    }

    @Test
    void shouldPutEachFrameInOneChainAfterAHeaderWithNumBuffersOneWithoutMergeableBuffers() throws Exception {
        serve(MODERN);
        int[] heads = rig.postRx(0, 3, 2048);
        byte[][] frames = {frame(60, 1), frame(1000, 2), frame(1514, 3)};
        for (byte[] f : frames) {
            assertTrue(port.inject(0, f));
        }

        for (int i = 0; i < frames.length; i++) {
            RxFrame r = rig.awaitFrame(0);
            assertEquals(1, r.chains().size());
            assertEquals(heads[i], r.chains().get(0).head(), "chains are used in the order they were posted");
            assertEquals(1, r.numBuffers());
            assertEquals(HEADER + frames[i].length, r.chains().get(0).usedLength(), "used length is header plus frame");
            assertArrayEquals(frames[i], r.frame());
        }
        rig.assertNothingMoreUsed(0);
        NetCounters c = rig.counters(0);
        assertEquals(3, c.rxFrames);
        assertEquals(60 + 1000 + 1514, c.rxBytes);
        assertEquals(0, c.rxDropped);
    }

    @Test
    void shouldWriteHeaderAndFrameAcrossAChainOfSeveralBuffersWithoutMergeableBuffers() throws Exception {
        serve(MODERN);
        int head = rig.postRxChain(0, 5, 7, 1, 300, 0, 2000);
        byte[] f = frame(1500, 4);
        assertTrue(port.inject(0, f));

        RxFrame r = rig.awaitFrame(0);

        assertEquals(head, r.chains().get(0).head());
        assertEquals(HEADER + 1500, r.chains().get(0).usedLength());
        assertEquals(1, r.numBuffers(), "num_buffers, split over two buffers");
        assertArrayEquals(f, r.frame());
    }

    @Test
    void shouldUseTheTenByteLegacyHeaderWithoutVersion1OrMergeableBuffers() throws Exception {
        serve(NetRig.EVENT_IDX);
        assertEquals(LEGACY_HEADER, rig.headerLength());
        rig.postRx(0, 1, 2048);
        byte[] f = frame(200, 5);
        assertTrue(port.inject(0, f));

        RxFrame r = rig.awaitFrame(0);

        assertEquals(LEGACY_HEADER + 200, r.chains().get(0).usedLength());
        assertArrayEquals(f, r.frame());
    }

    @Test
    void shouldDropAndCountAFrameTooBigForTheBufferAndCompleteTheChainWithZeroBytes() throws Exception {
        serve(MODERN);
        int small = rig.postRxChain(0, HEADER + 100);
        int big = rig.postRxChain(0, 2048);
        byte[] tooBig = frame(101, 6), fits = frame(100, 7);
        assertTrue(port.inject(0, tooBig));
        assertTrue(port.inject(0, fits));

        RxChain dropped = rig.awaitRxChain(0);
        RxFrame delivered = rig.awaitFrame(0);

        assertEmpty(small, dropped);
        assertEquals(big, delivered.chains().get(0).head(), "the next frame takes the next chain");
        assertArrayEquals(fits, delivered.frame());
        assertEquals(1, rig.counters(0).rxDropped);
        assertEquals(1, rig.counters(0).rxFrames);
    }

    @Test
    void shouldDeliverAFrameThatExactlyFillsTheBuffer() throws Exception {
        serve(MODERN);
        rig.postRxChain(0, HEADER + 100);
        byte[] f = frame(100, 8);
        assertTrue(port.inject(0, f));

        RxFrame r = rig.awaitFrame(0);

        assertEquals(HEADER + 100, r.chains().get(0).usedLength());
        assertArrayEquals(f, r.frame());
    }

    // ---- mergeable receive buffers --------------------------------------------------------------

    @Test
    void shouldSpreadAFrameOverAsManyChainsAsItNeedsAndSayHowManyInNumBuffers() throws Exception {
        serve(MODERN | MRG_RXBUF);
        int[] heads = rig.postRx(0, 4, 512);
        byte[] big = frame(1400, 9), small = frame(100, 10);
        assertTrue(port.inject(0, big));
        assertTrue(port.inject(0, small));

        RxFrame first = rig.awaitFrame(0);
        RxFrame second = rig.awaitFrame(0);

        assertEquals(3, first.numBuffers());
        assertArrayEquals(new int[] {512, 512, HEADER + 1400 - 1024}, first.usedLengths(),
                "every chain but the last is filled completely");
        assertEquals(List.of(heads[0], heads[1], heads[2]), first.chains().stream().map(RxChain::head).toList());
        assertArrayEquals(big, first.frame(), "the chains reassemble into the frame");
        assertEquals(1, second.numBuffers());
        assertEquals(heads[3], second.chains().get(0).head());
        assertArrayEquals(new int[] {HEADER + 100}, second.usedLengths());
        assertArrayEquals(small, second.frame());
        rig.assertNothingMoreUsed(0);
        assertEquals(2, rig.counters(0).rxFrames);
        assertEquals(1500, rig.counters(0).rxBytes);
    }

    @Test
    void shouldPutAFrameThatFitsInOneChainWithNumBuffersOneWithMergeableBuffers() throws Exception {
        serve(MODERN | MRG_RXBUF);
        rig.postRx(0, 2, 4096);
        byte[] f = frame(1514, 11);
        assertTrue(port.inject(0, f));

        RxFrame r = rig.awaitFrame(0);

        assertEquals(1, r.numBuffers());
        assertArrayEquals(new int[] {HEADER + 1514}, r.usedLengths());
        assertArrayEquals(f, r.frame());
    }

    /** virtio 1.2 §2.7.4: the device must not assume a particular arrangement of descriptors. */
    @Test
    void shouldSetNumBuffersWhenTheHeaderIsSplitAcrossDescriptorsOfAMergeableChain() throws Exception {
        serve(MODERN | MRG_RXBUF);
        int first = rig.postRxChain(0, 4, 7, 100);
        int second = rig.postRxChain(0, 11, 200);
        byte[] f = frame(250, 12);
        assertTrue(port.inject(0, f));

        RxFrame r = rig.awaitFrame(0);

        assertEquals(2, r.numBuffers(), "num_buffers straddles the second and third buffer of the first chain");
        assertEquals(List.of(first, second), r.chains().stream().map(RxChain::head).toList());
        assertArrayEquals(new int[] {111, HEADER + 250 - 111}, r.usedLengths());
        assertArrayEquals(f, r.frame());
    }

    @Test
    void shouldHoldAFrameUntilEnoughMergeableBuffersArriveAndThenDeliverItWholeOnce() throws Exception {
        serve(MODERN | MRG_RXBUF);
        int[] early = rig.postRx(0, 2, 256);
        long before = rig.queueCounters(0).descriptors;
        byte[] f = frame(1000, 13); // 1012 bytes with the header: 4 chains of 256
        assertTrue(port.inject(0, f));
        rig.awaitDeviceLooksAtRx(0, before);

        rig.assertNothingMoreUsed(0);
        assertEquals(0, rig.counters(0).rxDropped, "a frame waiting for buffers is not dropped");
        assertEquals(0, rig.counters(0).rxFrames);

        int[] late = rig.postRx(0, 3, 256);
        RxFrame r = rig.awaitFrame(0);

        assertEquals(4, r.numBuffers());
        assertEquals(List.of(early[0], early[1], late[0], late[1]), r.chains().stream().map(RxChain::head).toList());
        assertArrayEquals(new int[] {256, 256, 256, 244}, r.usedLengths());
        assertArrayEquals(f, r.frame());
        byte[] next = frame(60, 14);
        assertTrue(port.inject(0, next));
        RxFrame n = rig.awaitFrame(0);
        assertEquals(late[2], n.chains().get(0).head(), "the frame took its chains once, and nothing else");
        assertArrayEquals(next, n.frame());
        rig.assertNothingMoreUsed(0);
        assertEquals(2, rig.counters(0).rxFrames);
        assertEquals(0, rig.counters(0).rxDropped);
    }

    /**
     * A frame waiting for more mergeable buffers than the guest has posted must let the poller
     * sleep until the guest posts more. Today the chains given back with {@code VirtQueue.rewind}
     * count as available, so the poller's idle check finds work at once and the pair's poller spins
     * (some 600,000 attempts a second here). Needs the queue to remember that what is available is
     * not enough (and, with EVENT_IDX, to ask for a kick at the driver's current avail index).
     */
    @Test
    void shouldLetThePollerSleepWhileAFrameWaitsForMoreMergeableBuffers() throws Exception {
        serve(MODERN | MRG_RXBUF);
        rig.postRx(0, 2, 256);
        long before = rig.queueCounters(0).descriptors;
        assertTrue(port.inject(0, frame(1000, 25)));
        rig.awaitDeviceLooksAtRx(0, before);

        long settled = rig.queueCounters(0).descriptors;
        Thread.sleep(200); // an observation window: nothing should happen in it
        long attempts = (rig.queueCounters(0).descriptors - settled) / 2;

        // A poller that kept retrying would make hundreds of thousands of attempts in 200 ms. One that
        // sleeps makes a few: the adaptive default looks again during its short spin after any wake-up.
        assertTrue(attempts < 100, attempts + " attempts in 200 ms with no new buffer");
        rig.postRx(0, 2, 256);
        assertArrayEquals(frame(1000, 25), rig.awaitFrame(0).frame());
    }

    @Test
    void shouldDropAFrameTooBigForEveryBufferTheRingCanHoldInsteadOfWaitingForever() throws Exception {
        serve(MODERN | MRG_RXBUF, 8);
        int[] all = rig.postRx(0, 8, 64); // 512 bytes: the whole ring
        byte[] f = frame(1000, 15);
        assertTrue(port.inject(0, f));

        for (int head : all) {
            assertEmpty(head, rig.awaitRxChain(0));
        }
        assertEquals(1, rig.counters(0).rxDropped);

        rig.postRx(0, 1, 2048);
        byte[] next = frame(300, 16);
        assertTrue(port.inject(0, next));
        assertArrayEquals(next, rig.awaitFrame(0).frame(), "the receive queue is not stuck behind it");
    }

    @Test
    void shouldDropAFrameThatWouldNeedMoreThanTheMergeLimitOfChainsAndKeepTheRest() throws Exception {
        serve(MODERN | MRG_RXBUF, 512);
        int[] heads = rig.postRx(0, GuestNic.MAX_MERGED + 2, 32);
        byte[] f = frame(GuestNic.MAX_MERGED * 32, 17); // with the header, one chain more than the limit
        assertTrue(port.inject(0, f));

        for (int i = 0; i < GuestNic.MAX_MERGED; i++) {
            assertEmpty(heads[i], rig.awaitRxChain(0));
        }
        assertEquals(1, rig.counters(0).rxDropped);
        byte[] next = frame(20, 18);
        assertTrue(port.inject(0, next));
        RxFrame r = rig.awaitFrame(0);
        assertEquals(heads[GuestNic.MAX_MERGED], r.chains().get(0).head(), "the chain after the limit was given back");
        assertArrayEquals(next, r.frame());
    }

    @Test
    void shouldDropTheFrameAndEmptyItsChainsWhenAMalformedChainInterruptsAMergeableFrame() throws Exception {
        serve(MODERN | MRG_RXBUF);
        int good = rig.postRxChain(0, 256);
        DriverQueue rx = rig.rx(0);
        int bad = rx.chain(Buffer.writable(rig.ram.size() + 4096, 256)); // outside guest memory
        rig.outstanding(0, bad);
        rx.makeAvailable(bad);
        rx.kick();
        assertTrue(port.inject(0, frame(1000, 19)));

        assertEmpty(bad, rig.awaitRxChain(0)); // the malformed chain is refused
        // The chain taken before it cannot be given back past it, so it comes back empty too.
        assertEmpty(good, rig.awaitRxChain(0));
        assertEquals(1, rig.counters(0).rxDropped);
        assertEquals(1, rig.queueCounters(0).chainsRejected(ChainError.BUFFER_UNMAPPED));

        rig.postRx(0, 1, 2048);
        byte[] next = frame(500, 20);
        assertTrue(port.inject(0, next));
        assertArrayEquals(next, rig.awaitFrame(0).frame());
    }

    @ParameterizedTest(name = "mergeable={0}")
    @ValueSource(booleans = {false, true})
    void shouldKeepAFrameWaitingWhenTheOnlyChainIsMalformedAndDeliverItToTheNextGoodOne(boolean mergeable) throws Exception {
        serve(MODERN | (mergeable ? MRG_RXBUF : 0));
        DriverQueue rx = rig.rx(0);
        int bad = rx.chain(Buffer.writable(rig.ram.size() - 16, 256)); // runs off the end of guest memory
        rig.outstanding(0, bad);
        rx.makeAvailable(bad);
        rx.kick();
        byte[] f = frame(400, 21);
        assertTrue(port.inject(0, f));
        assertEmpty(bad, rig.awaitRxChain(0));

        int good = rig.postRxChain(0, 2048);
        RxFrame r = rig.awaitFrame(0);

        assertEquals(good, r.chains().get(0).head());
        assertArrayEquals(f, r.frame());
        assertEquals(0, rig.counters(0).rxDropped, "no buffer was lost to the frame, so the frame was not lost");
    }

    // ---- who delivers, and when -----------------------------------------------------------------

    @ParameterizedTest(name = "mergeable={0}")
    @ValueSource(booleans = {false, true})
    void shouldDeliverFramesInjectedFromAnotherThreadInOrderOnceTheGuestPostsBuffersLater(boolean mergeable) throws Exception {
        serve(MODERN | (mergeable ? MRG_RXBUF : 0));
        int count = 300;
        List<byte[]> frames = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            frames.add(frame(60 + (i * 37) % 1400, 100 + i));
        }
        CountDownLatch firstHalf = new CountDownLatch(1);
        AtomicInteger refused = new AtomicInteger();
        Thread injector = Thread.ofPlatform().name("injector").start(() -> {
            for (int i = 0; i < count; i++) {
                if (!port.inject(0, frames.get(i))) {
                    refused.incrementAndGet();
                }
                if (i == count / 2) {
                    firstHalf.countDown();
                }
            }
        });
        assertTrue(firstHalf.await(10, TimeUnit.SECONDS));

        // The guest posts receive buffers only now, a few at a time, while the injector may still run;
        // with 1024-byte buffers a frame takes at most two chains.
        int postedChains = 0, usedChains = 0;
        for (int received = 0; received < count; received++) {
            if (postedChains - usedChains < 2) {
                rig.postRx(0, 8, mergeable ? 1024 : 2048);
                postedChains += 8;
            }
            RxFrame r = rig.awaitFrame(0);
            assertArrayEquals(frames.get(received), r.frame(), "frame " + received);
            usedChains += r.chains().size();
        }
        injector.join();

        assertEquals(0, refused.get());
        assertEquals(count, rig.counters(0).rxFrames);
        assertEquals(0, rig.counters(0).rxDropped);
    }

    @ParameterizedTest(name = "mergeable={0}")
    @ValueSource(booleans = {false, true})
    void shouldDeliverFramesThePortProducesOnItsPollerWhenBuffersComeLater(boolean mergeable) throws Exception {
        serve(MODERN | (mergeable ? MRG_RXBUF : 0));
        byte[] a = frame(1200, 22), b = frame(64, 23);
        long polled = port.polls(0);
        port.produce(0, a);
        port.produce(0, b);
        NetRig.await(() -> port.polls(0) > polled, "the poller to poll the port");
        assertEquals(2, port.waiting(0), "without receive buffers nothing is delivered");

        rig.postRx(0, 4, mergeable ? 1024 : 2048);

        assertArrayEquals(a, rig.awaitFrame(0).frame());
        assertArrayEquals(b, rig.awaitFrame(0).frame());
        assertEquals(0, port.waiting(0));
    }

    @Test
    void shouldInterruptTheDriverWhenAFrameArrivesWithEventIdx() throws Exception {
        serve(MODERN);
        rig.rx(0).setUsedEventAtNext(); // interrupt me at the first used element
        rig.postRx(0, 1, 2048);
        rig.rx(0).takeInterrupts();
        assertTrue(port.inject(0, frame(100, 24)));

        rig.awaitFrame(0);

        NetRig.await(() -> rig.rx(0).takeInterrupts() > 0, "an interrupt on the receive queue's call eventfd");
    }
}
