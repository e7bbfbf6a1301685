package io.jvhost.net;

import java.lang.foreign.MemorySegment;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The VXLAN header, its checks on receipt, the inner-flow hash, and the MAC table with ageing. */
class VxlanTest {
    private static final int MAX_FRAME = 1518;

    private static MemorySegment packet(int flags, int vni, int reserved, int frameLength) {
        MemorySegment p = MemorySegment.ofArray(new byte[8 + frameLength]);
        p.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) flags);
        p.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 1, (byte) reserved);
        p.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 3, (byte) reserved);
        p.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 4, (byte) (vni >>> 16));
        p.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 5, (byte) (vni >>> 8));
        p.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 6, (byte) vni);
        p.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 7, (byte) reserved);
        return p;
    }

    @Test
    void shouldWriteTheHeaderAsRfc7348DrawsIt() {
        MemorySegment p = MemorySegment.ofArray(new byte[10]);
        Vxlan.putHeader(p, 2, 0xABCDEF);
        assertArrayEquals(new byte[] {0, 0, 0x08, 0, 0, 0, (byte) 0xAB, (byte) 0xCD, (byte) 0xEF, 0}, p.toArray(
                java.lang.foreign.ValueLayout.JAVA_BYTE));
        assertEquals(0xABCDEF, Vxlan.vni(p, 2));
    }

    @Test
    void shouldAcceptAHeaderWithTheIFlagAndItsVniWhateverTheReservedBitsSay() {
        assertEquals(Vxlan.OK, Vxlan.check(packet(0x08, 42, 0, 60), 0, 68, 42, MAX_FRAME));
        assertEquals(Vxlan.OK, Vxlan.check(packet(0xFF, 42, 0xFF, 60), 0, 68, 42, MAX_FRAME), "reserved bits ignored");
        assertEquals(Vxlan.OK, Vxlan.check(packet(0x08, 42, 0, 14), 0, 22, 42, MAX_FRAME), "a bare Ethernet header");
        assertEquals(Vxlan.OK, Vxlan.check(packet(0x08, 42, 0, MAX_FRAME), 0, 8 + MAX_FRAME, 42, MAX_FRAME));
    }

    @Test
    void shouldRefuseTruncatedHeadersMissingIFlagsOtherVnisAndInnerFramesOutOfRange() {
        for (int length = 0; length < 8; length++) {
            assertEquals(Vxlan.TRUNCATED, Vxlan.check(packet(0x08, 42, 0, 0), 0, length, 42, MAX_FRAME));
        }
        assertEquals(Vxlan.NO_I_FLAG, Vxlan.check(packet(0xF7, 42, 0, 60), 0, 68, 42, MAX_FRAME));
        assertEquals(Vxlan.WRONG_VNI, Vxlan.check(packet(0x08, 43, 0, 60), 0, 68, 42, MAX_FRAME));
        assertEquals(Vxlan.WRONG_VNI, Vxlan.check(packet(0x08, 42 | 1 << 23, 0, 60), 0, 68, 42, MAX_FRAME));
        assertEquals(Vxlan.FRAME_TOO_SHORT, Vxlan.check(packet(0x08, 42, 0, 13), 0, 21, 42, MAX_FRAME));
        assertEquals(Vxlan.FRAME_TOO_SHORT, Vxlan.check(packet(0x08, 42, 0, 0), 0, 8, 42, MAX_FRAME));
        assertEquals(Vxlan.FRAME_TOO_LONG, Vxlan.check(packet(0x08, 42, 0, MAX_FRAME + 1), 0, 9 + MAX_FRAME, 42, MAX_FRAME));
    }

    @Test
    void shouldCountTheOverheadOfOuterHeadersAndTheInnerEthernetHeader() {
        assertEquals(50, Vxlan.overhead(false)); // 20 IPv4 + 8 UDP + 8 VXLAN + 14 Ethernet
        assertEquals(70, Vxlan.overhead(true));  // 40 IPv6 + ...
    }

    private static MemorySegment tcp4(int srcIp, int dstIp, int srcPort, int dstPort, int fragmentField) {
        byte[] f = Frames.udp(0x020000000001L, 0x020000000002L, 80);
        MemorySegment s = MemorySegment.ofArray(f);
        var be = java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN);
        var be16 = java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.BIG_ENDIAN);
        s.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 23, (byte) 6);
        s.set(be16, 20, (short) fragmentField);
        s.set(be, 26, srcIp);
        s.set(be, 30, dstIp);
        s.set(be16, 34, (short) srcPort);
        s.set(be16, 36, (short) dstPort);
        return s;
    }

    @Test
    void shouldHashTheInnerFlowSoOneFlowKeepsItsPortAndFlowsSpread() {
        int a = Vxlan.flowHash(tcp4(0x0A000001, 0x0A000002, 40000, 80, 0), 0, 80);
        assertEquals(a, Vxlan.flowHash(tcp4(0x0A000001, 0x0A000002, 40000, 80, 0), 0, 80), "the same flow");
        Set<Integer> sockets = new HashSet<>();
        for (int port = 40000; port < 40064; port++) {
            sockets.add((Vxlan.flowHash(tcp4(0x0A000001, 0x0A000002, port, 80, 0), 0, 80) & 0x7FFF_FFFF) % 8);
        }
        assertEquals(8, sockets.size(), "64 flows that differ only in a port reach all 8 source sockets");
        assertTrue(a != Vxlan.flowHash(tcp4(0x0A000001, 0x0A000003, 40000, 80, 0), 0, 80), "another address");
        // A later fragment has no ports: it hashes like every fragment of its datagram, by addresses.
        assertEquals(Vxlan.flowHash(tcp4(0x0A000001, 0x0A000002, 1, 2, 185), 0, 80),
                Vxlan.flowHash(tcp4(0x0A000001, 0x0A000002, 3, 4, 185), 0, 80));
    }

    @Test
    void shouldHashFramesShorterThanTheirHeadersWithoutReadingPastThem() {
        MemorySegment s = tcp4(1, 2, 3, 4, 0);
        for (int length = 0; length <= 80; length++) {
            Vxlan.flowHash(s.asSlice(0, length), 0, length); // never out of bounds
        }
    }

    @Test
    void shouldLearnLookUpAndAgeMacsOnAnInjectedClock() {
        AtomicLong now = new AtomicLong(1_000);
        MacTable t = new MacTable(64, 300_000, now::get);
        assertEquals(-1, t.lookup(0x525400000001L));
        assertEquals(-1, t.learn(0x525400000001L, 3));
        assertEquals(3, t.lookup(0x525400000001L));
        assertEquals(3, t.learn(0x525400000001L, 5), "moved: the value before comes back");
        assertEquals(5, t.lookup(0x525400000001L));

        now.addAndGet(300_000);
        assertEquals(5, t.lookup(0x525400000001L), "at the ageing time still there");
        now.addAndGet(1);
        assertEquals(-1, t.lookup(0x525400000001L), "aged out");
        t.learn(0x525400000001L, 7);
        assertEquals(7, t.lookup(0x525400000001L), "learnt again");

        assertEquals(-1, t.learn(Frames.BROADCAST, 1));
        assertEquals(-1, t.lookup(Frames.BROADCAST), "group addresses are never learnt");
    }

    @Test
    void shouldLeaveAMacUnknownWhenItsNeighbourhoodIsFullRatherThanEvictAnother() {
        MacTable t = new MacTable(16, 300_000, () -> 0);
        for (long mac = 2; mac < 2 + 16 * 2; mac += 2) {
            t.learn(mac, 1);
        }
        assertEquals(-1, t.lookup(1000), "a 17th MAC in a 16-slot table floods");
        assertEquals(1, t.lookup(2));
    }
}
