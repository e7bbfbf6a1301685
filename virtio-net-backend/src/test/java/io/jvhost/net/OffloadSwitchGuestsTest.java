package io.jvhost.net;

import io.jvhost.net.NetRig.RxFrame;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.net.NetRig.GUEST_MAC;
import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.MRG_RXBUF;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Offloads across the {@link L2Switch} between simulated guests: a guest's 64 KiB TCP segment
 * reaches a guest that accepted TSO whole, with its header, and a guest that did not as MTU-sized
 * frames a receiving stack accepts; headers a hostile guest sends are counted drops.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class OffloadSwitchGuestsTest {
    // virtio 1.2 §5.1.3, written out rather than taken from the code under test.
    static final long CSUM = 1L << 0, GUEST_CSUM = 1L << 1, GUEST_TSO4 = 1L << 7, HOST_TSO4 = 1L << 11;
    static final long MAC_A = GUEST_MAC, MAC_B = GUEST_MAC + 1, MAC_C = GUEST_MAC + 2;

    private final L2Switch sw = new L2Switch();
    private final List<NetRig> rigs = new ArrayList<>();

    @AfterEach
    void close() throws Exception {
        for (NetRig r : rigs) {
            r.close();
        }
    }

    private NetRig guest(long mac) throws Exception {
        NetRig r = NetRig.serve(sw.newPort(), 1, mac, NetDevice.DEFAULT_MTU);
        r.plainHeaders = false;
        rigs.add(r);
        return r;
    }

    /** The 10 header bytes of a guest's TSO segment over IPv4 (SegmenterTest's frame layout). */
    static byte[] tsoHeaderBytes() {
        byte[] h = new byte[NetHeader.SIZE];
        SegmenterTest.tsoHeader(false).write(MemorySegment.ofArray(h), 0);
        return h;
    }

    /** A TCP frame from {@code src} to {@code dst}: SegmenterTest's, readdressed. */
    static byte[] tcpFrame(long dst, long src, int payload) {
        byte[] f = SegmenterTest.tcpFrame(false, payload, 0x18);
        Frames.putMac(MemorySegment.ofArray(f), 0, dst);
        Frames.putMac(MemorySegment.ofArray(f), 6, src);
        return f;
    }

    @Test
    void shouldPassATsoSegmentWholeToAGuestThatAcceptedTsoAndCutItForOneThatDidNot() throws Exception {
        NetRig a = guest(MAC_A).start(MODERN | MRG_RXBUF | CSUM | HOST_TSO4);
        NetRig b = guest(MAC_B).start(MODERN | MRG_RXBUF | GUEST_CSUM | GUEST_TSO4);
        NetRig c = guest(MAC_C).start(MODERN | MRG_RXBUF);
        b.postRx(0, 40, 4096);
        c.postRx(0, 64, 2048);
        int payload = 40 * 1448 + 100;

        a.transmit(0, tsoHeaderBytes(), tcpFrame(Frames.BROADCAST, MAC_A, payload)); // flooded to both

        RxFrame whole = b.awaitFrame(0);
        assertEquals(66 + payload, whole.frame().length, "one frame, not segments");
        NetHeader h = new NetHeader().read(MemorySegment.ofArray(whole.header()), 0);
        assertEquals(NetHeader.GSO_TCPV4, h.gsoType());
        assertEquals(1448, h.gsoSize());
        assertTrue(h.needsChecksum());
        awaitSegments(c, 41, payload);
        assertEquals(41, c.counters(0).rxFrames);
        assertEquals(0, a.counters(0).txBadHeader);
    }

    /** Waits for {@code n} plain segments on {@code guest}, each checked like a receiving stack, carrying {@code payload} bytes in all. */
    private static void awaitSegments(NetRig guest, int n, int payload) {
        int bytes = 0;
        for (int i = 0; i < n; i++) {
            RxFrame f = guest.awaitFrame(0);
            assertArrayEquals(new byte[NetHeader.SIZE], java.util.Arrays.copyOf(f.header(), NetHeader.SIZE),
                    "a plain header on segment " + i);
            assertTrue(f.frame().length <= 1514, "segment " + i + " is " + f.frame().length + " bytes");
            SegmenterTest.assertValidTcp(f.frame(), false);
            bytes += f.frame().length - 66;
        }
        assertEquals(payload, bytes);
    }

    @Test
    void shouldCountAndDropFramesWhoseHeadersAskForWhatWasNotNegotiatedOrPointOutsideTheFrame() throws Exception {
        NetRig a = guest(MAC_A).start(MODERN | MRG_RXBUF | CSUM | HOST_TSO4);
        NetRig b = guest(MAC_B).start(MODERN | MRG_RXBUF | GUEST_CSUM | GUEST_TSO4);
        b.postRx(0, 8, 4096);
        byte[] frame = tcpFrame(MAC_B, MAC_A, 3000);
        ByteBuffer bogusType = ByteBuffer.wrap(tsoHeaderBytes().clone()).order(ByteOrder.LITTLE_ENDIAN).put(1, (byte) 0x42);
        ByteBuffer zeroSize = ByteBuffer.wrap(tsoHeaderBytes().clone()).order(ByteOrder.LITTLE_ENDIAN).putShort(4, (short) 0);
        ByteBuffer pastEnd = ByteBuffer.wrap(tsoHeaderBytes().clone()).order(ByteOrder.LITTLE_ENDIAN).putShort(6, (short) 5000);
        ByteBuffer tso6 = ByteBuffer.wrap(tsoHeaderBytes().clone()).order(ByteOrder.LITTLE_ENDIAN).put(1, (byte) 4);

        for (ByteBuffer h : List.of(bogusType, zeroSize, pastEnd, tso6)) {
            a.transmit(0, h.array(), frame);
        }
        a.transmit(0, tsoHeaderBytes(), frame); // and a good one still goes through

        assertEquals(4, a.counters(0).txBadHeader);
        assertEquals(1, a.counters(0).txFrames);
        assertEquals(66 + 3000, b.awaitFrame(0).frame().length);
        b.assertNothingMoreUsed(0);
    }
}
