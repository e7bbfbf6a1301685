package io.jvhost.net;

import io.jvhost.core.protocol.MessageType;
import io.jvhost.net.NetRig.RxFrame;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.net.NetRig.GUEST_MAC;
import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.MQ;
import static io.jvhost.net.NetRig.MRG_RXBUF;
import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Simulated guests on an {@link L2Switch}, each through its own vhost-user socket: what one guest's
 * driver puts on its transmit ring comes out of another guest's receive ring.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class L2SwitchGuestsTest {
    static final long MAC_A = GUEST_MAC, MAC_B = GUEST_MAC + 1, MAC_C = GUEST_MAC + 2;
    /** Another host behind guest A (A bridges it), with an odd MAC where A's is even. */
    static final long MAC_A2 = GUEST_MAC + 0x101;

    private final L2Switch sw = new L2Switch();
    private final List<NetRig> rigs = new ArrayList<>();

    @AfterEach
    void close() throws Exception {
        for (NetRig r : rigs) {
            r.close();
        }
    }

    private NetRig guest(long mac, int pairs) throws Exception {
        NetRig r = NetRig.serve(sw.newPort(), pairs, mac, NetDevice.DEFAULT_MTU);
        rigs.add(r);
        return r;
    }

    @Test
    void shouldCarryAFrameFromOneGuestsTransmitRingIntoTheOthersReceiveRingAndTheReplyBack() throws Exception {
        NetRig a = guest(MAC_A, 1).start(MODERN | MRG_RXBUF);
        NetRig b = guest(MAC_B, 1).start(MODERN);
        a.postRx(0, 4, 2048);
        byte[] request = frame(MAC_B, MAC_A, 1000, 1);

        a.transmit(0, request, 5, 12, 400);
        b.postRx(0, 4, 2048); // B's buffers come after the frame: it waits for them

        assertArrayEquals(request, b.awaitFrame(0).frame());
        a.assertNothingMoreUsed(0); // a flood never goes back to the sender

        byte[] reply = frame(MAC_A, MAC_B, 1514, 2);
        b.transmit(0, reply);
        RxFrame r = a.awaitFrame(0);
        assertArrayEquals(reply, r.frame());
        assertEquals(1, r.numBuffers());

        assertEquals(0, sw.lookup(MAC_A));
        assertEquals(1, sw.lookup(MAC_B));
        assertEquals(1, a.counters(0).txFrames);
        assertEquals(1, a.counters(0).rxFrames);
        assertEquals(1, b.counters(0).txFrames);
        assertEquals(1, b.counters(0).rxFrames);
    }

    @Test
    void shouldFloodABroadcastToEveryOtherGuestAndUnicastOnlyToTheOneBehindTheMac() throws Exception {
        NetRig a = guest(MAC_A, 1).start(MODERN);
        NetRig b = guest(MAC_B, 1).start(MODERN);
        NetRig c = guest(MAC_C, 1).start(MODERN);
        for (NetRig r : rigs) {
            r.postRx(0, 4, 2048);
        }
        byte[] hello = frame(Frames.BROADCAST, MAC_B, 342, 3);

        b.transmit(0, hello);
        assertArrayEquals(hello, a.awaitFrame(0).frame());
        assertArrayEquals(hello, c.awaitFrame(0).frame());

        byte[] toB = frame(MAC_B, MAC_C, 200, 4);
        c.transmit(0, toB);
        assertArrayEquals(toB, b.awaitFrame(0).frame());
        byte[] toC = frame(MAC_C, MAC_B, 200, 5);
        b.transmit(0, toC); // once C's unicast arrived, nothing else is in flight
        assertArrayEquals(toC, c.awaitFrame(0).frame());

        a.assertNothingMoreUsed(0);
        b.assertNothingMoreUsed(0);
        c.assertNothingMoreUsed(0);
    }

    /** A guest without MQ (or one that enabled fewer pairs) receives only on pair 0: frames must go there. */
    @Test
    void shouldDeliverEveryFrameToAGuestThatUsesFewerQueuePairsThanItsNicHas() throws Exception {
        NetRig a = guest(MAC_A, 1).start(MODERN);
        NetRig b = guest(MAC_B, 2).start(MODERN, 1, NetRig.QUEUE_SIZE); // no MQ: pair 1 never starts
        b.postRx(0, 8, 2048);
        List<byte[]> sent = new ArrayList<>();

        for (int i = 0; i < 6; i++) {
            byte[] f = frame(MAC_B, i % 2 == 0 ? MAC_A : MAC_A2, 100 + i, i); // even and odd sources
            a.transmit(0, f);
            sent.add(f);
        }

        for (byte[] f : sent) {
            assertArrayEquals(f, b.awaitFrame(0).frame());
        }
        assertEquals(6, b.counters(0).rxFrames);
    }

    @Test
    void shouldSpreadFramesOverTheQueuePairsOfAMultiQueueGuestKeepingEachSourceInOrder() throws Exception {
        NetRig a = guest(MAC_A, 1).start(MODERN);
        NetRig b = guest(MAC_B, 2).start(MODERN | MQ);
        b.postRx(0, 8, 2048);
        b.postRx(1, 8, 2048);
        List<List<byte[]>> bySource = List.of(new ArrayList<>(), new ArrayList<>());

        for (int i = 0; i < 8; i++) {
            byte[] f = frame(MAC_B, i % 2 == 0 ? MAC_A : MAC_A2, 100 + i, i);
            a.transmit(0, f);
            bySource.get(i % 2).add(f);
        }

        for (int pair = 0; pair < 2; pair++) {
            byte[] first = b.awaitFrame(pair).frame();
            List<byte[]> flow = bySource.get(Frames.source(MemorySegment.ofArray(first), 0) == MAC_A ? 0 : 1);
            assertArrayEquals(flow.get(0), first);
            for (int i = 1; i < flow.size(); i++) {
                assertArrayEquals(flow.get(i), b.awaitFrame(pair).frame(), "frame " + i + " of its flow on pair " + pair);
            }
        }
        assertEquals(4, b.counters(0).rxFrames);
        assertEquals(4, b.counters(1).rxFrames);
    }

    @Test
    void shouldAnnounceAMigratedGuestToTheOthersAndLearnWhereItIsFromSendRarp() throws Exception {
        NetRig a = guest(MAC_A, 1).start(MODERN);
        NetRig b = guest(MAC_B, 1).start(MODERN);
        a.postRx(0, 2, 2048);
        byte[] payload = {0x52, 0x54, 0x00, 0x12, 0x34, 0x57, 0, 0}; // MAC_B, as QEMU copies it

        assertEquals(0, b.frontend.request(MessageType.SEND_RARP, payload));

        byte[] rarp = a.awaitFrame(0).frame();
        assertEquals(MAC_B, Frames.source(MemorySegment.ofArray(rarp), 0));
        assertEquals(Frames.BROADCAST, Frames.destination(MemorySegment.ofArray(rarp), 0));
        assertEquals(1, sw.lookup(MAC_B), "the switch knows where B is now");
    }
}
