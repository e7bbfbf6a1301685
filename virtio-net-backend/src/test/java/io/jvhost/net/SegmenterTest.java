package io.jvhost.net;

import io.jvhost.core.device.VirtioFeatures;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static io.jvhost.core.device.VirtioFeatures.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Software segmentation and checksums, and the header checks that guard them. Every segment is
 * checked the way a receiving stack checks it: IP header checksum, TCP checksum over the
 * pseudo-header, lengths, sequence numbers and flags; and the payloads must join up to the original.
 */
class SegmenterTest {
    static final long ALL = NetHeader.HOST_OFFLOADS | NetHeader.GUEST_OFFLOADS;
    /** What a 1500-byte MTU leaves for payload behind TCP with timestamps: 1448 over IPv4, 1428 over IPv6. */
    static int mss(boolean v6) {
        return v6 ? 1428 : 1448;
    }

    /** A TCP segment as a Linux guest hands it over with TSO: headers, then {@code payload} bytes. */
    static byte[] tcpFrame(boolean v6, int payload, int tcpFlags) {
        int l3 = 14, l4 = l3 + (v6 ? 40 : 20), tcpLen = 32, total = l4 + tcpLen + payload;
        ByteBuffer b = ByteBuffer.allocate(total).order(ByteOrder.BIG_ENDIAN);
        b.put(0, new byte[] {0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1});
        b.putShort(12, (short) (v6 ? 0x86DD : 0x0800));
        if (v6) {
            b.putInt(l3, 0x6000_0000);
            b.putShort(l3 + 4, (short) (total - l3 - 40));
            b.put(l3 + 6, (byte) 6);
            b.put(l3 + 7, (byte) 64);
            for (int i = 0; i < 16; i++) {
                b.put(l3 + 8 + i, (byte) (0xFE - i));
                b.put(l3 + 24 + i, (byte) (0x20 + i));
            }
        } else {
            b.put(l3, (byte) 0x45);
            b.putShort(l3 + 2, (short) (total - l3));
            b.putShort(l3 + 4, (short) 0x1234);
            b.putShort(l3 + 6, (short) 0x4000);
            b.put(l3 + 8, (byte) 64);
            b.put(l3 + 9, (byte) 6);
            b.putInt(l3 + 12, 0xA9FE_4D02);
            b.putInt(l3 + 16, 0xA9FE_4D01);
            b.putShort(l3 + 10, (short) ~Segmenter.fold(Segmenter.sum(MemorySegment.ofArray(b.array()), l3, 20, 0)));
        }
        b.putShort(l4, (short) 40000);
        b.putShort(l4 + 2, (short) 5201);
        b.putInt(l4 + 4, 0xFFFF_F000); // wraps during the segment
        b.putInt(l4 + 8, 77);
        b.put(l4 + 12, (byte) (tcpLen / 4 << 4));
        b.put(l4 + 13, (byte) tcpFlags);
        b.putShort(l4 + 14, (short) 512);
        b.put(l4 + 20, (byte) 1); // options: NOP NOP timestamp
        b.put(l4 + 21, (byte) 1);
        b.put(l4 + 22, (byte) 8);
        b.put(l4 + 23, (byte) 10);
        for (int i = 0; i < payload; i++) {
            b.put(l4 + tcpLen + i, (byte) (i * 7 + 3));
        }
        return b.array();
    }

    static NetHeader tsoHeader(boolean v6) {
        int l4 = 14 + (v6 ? 40 : 20);
        return new NetHeader().checksum(l4, 16).gso(v6 ? NetHeader.GSO_TCPV6 : NetHeader.GSO_TCPV4, mss(v6), l4 + 32);
    }

    static List<byte[]> resolve(NetHeader h, byte[] frame, int mtuFrame) {
        List<byte[]> out = new ArrayList<>();
        int r = new Segmenter(9234).resolve(h, MemorySegment.ofArray(frame), 0, frame.length, mtuFrame,
                (m, len) -> out.add(m.asSlice(0, len).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE)));
        assertEquals(Segmenter.DONE, r);
        return out;
    }

    /** The ones' complement sum of a whole range, folded: 0xFFFF when a checksum inside it is right. */
    static int sum(byte[] b, int from, int to, long initial) {
        return Segmenter.fold(Segmenter.sum(MemorySegment.ofArray(b), from, to - from, initial));
    }

    static void assertValidTcp(byte[] seg, boolean v6) {
        ByteBuffer b = ByteBuffer.wrap(seg);
        int l3 = 14, l4 = l3 + (v6 ? 40 : 20);
        long pseudo;
        if (v6) {
            assertEquals(seg.length - l3 - 40, Short.toUnsignedInt(b.getShort(l3 + 4)), "IPv6 payload length");
            pseudo = Segmenter.sum(MemorySegment.ofArray(seg), l3 + 8, 32, 0);
        } else {
            assertEquals(seg.length - l3, Short.toUnsignedInt(b.getShort(l3 + 2)), "IPv4 total length");
            assertEquals(0xFFFF, sum(seg, l3, l4, 0), "IPv4 header checksum");
            pseudo = Segmenter.sum(MemorySegment.ofArray(seg), l3 + 12, 8, 0);
        }
        assertEquals(0xFFFF, sum(seg, l4, seg.length, pseudo + 6 + seg.length - l4), "TCP checksum");
    }

    @ParameterizedTest(name = "IPv6 {0}")
    @ValueSource(booleans = {false, true})
    void shouldCutATsoSegmentIntoMtuSizedFramesThatAReceiverAccepts(boolean v6) {
        int mss = mss(v6), payload = 45 * mss + 1000;
        byte[] frame = tcpFrame(v6, payload, 0x18 | 0x01 | 0x80); // PSH ACK FIN CWR
        List<byte[]> segs = resolve(tsoHeader(v6), frame, 1514);
        assertEquals(46, segs.size());
        int l4 = 14 + (v6 ? 40 : 20), headers = l4 + 32;
        ByteBuffer joined = ByteBuffer.allocate(payload);
        for (int i = 0; i < segs.size(); i++) {
            byte[] s = segs.get(i);
            ByteBuffer b = ByteBuffer.wrap(s);
            assertTrue(s.length <= 1514, "segment " + i + " is " + s.length + " bytes");
            assertValidTcp(s, v6);
            assertEquals(0xFFFF_F000 + i * mss, b.getInt(l4 + 4), "sequence number of segment " + i);
            int flags = b.get(l4 + 13) & 0xFF;
            boolean last = i == segs.size() - 1;
            assertEquals(last, (flags & 0x01) != 0, "FIN only on the last");
            assertEquals(last, (flags & 0x08) != 0, "PSH only on the last");
            assertEquals(i == 0, (flags & 0x80) != 0, "CWR only on the first");
            if (!v6) {
                assertEquals(0x1234 + i, Short.toUnsignedInt(b.getShort(14 + 4)), "IPv4 id");
            }
            joined.put(s, headers, s.length - headers);
        }
        byte[] expected = new byte[payload];
        System.arraycopy(frame, headers, expected, 0, payload);
        assertArrayEquals(expected, joined.array());
    }

    @Test
    void shouldCompleteTheChecksumOfAFrameThatStillNeedsIt() {
        byte[] frame = tcpFrame(false, 300, 0x18);
        int l4 = 34;
        // As the guest leaves it: the pseudo-header's folded sum (addresses, protocol, length) in the field.
        long pseudo = Segmenter.sum(MemorySegment.ofArray(frame), 14 + 12, 8, 6 + frame.length - l4);
        ByteBuffer.wrap(frame).putShort(l4 + 16, (short) Segmenter.fold(pseudo));
        List<byte[]> out = resolve(new NetHeader().checksum(l4, 16), frame, 1514);
        assertEquals(1, out.size());
        assertValidTcp(out.get(0), false);
    }

    @Test
    void shouldRefuseToSegmentWhatIsNotTcpOverIp() {
        byte[] frame = tcpFrame(false, 4000, 0x10);
        frame[14 + 9] = 17; // UDP
        int r = new Segmenter(9234).resolve(tsoHeader(false), MemorySegment.ofArray(frame), 0, frame.length, 1514,
                (m, len) -> { throw new AssertionError("nothing may come out"); });
        assertEquals(Segmenter.MALFORMED, r);
    }

    @Test
    void shouldRefuseATcpHeaderLengthPastTheFrame() {
        byte[] frame = tcpFrame(false, 0, 0x10);
        frame[34 + 12] = (byte) 0xF0; // 60-byte TCP header in a frame that has 32
        assertEquals(Segmenter.MALFORMED, new Segmenter(9234).resolve(tsoHeader(false), MemorySegment.ofArray(frame), 0,
                frame.length, 1514, (m, len) -> { throw new AssertionError(); }));
    }

    @Test
    void shouldAcceptAHeaderWithinTheFrameAndTheNegotiatedFeatures() {
        assertNull(tsoHeader(false).transmitError(20000, ALL));
        assertNull(new NetHeader().transmitError(60, 0));
    }

    @Test
    void shouldRefuseHeadersAHostileGuestCouldSend() {
        long noTso6 = ALL & ~VirtioFeatures.bit(NET_HOST_TSO6);
        assertNotNull(new NetHeader().gso(0x42, 1448, 66).checksum(34, 16).transmitError(4000, ALL), "bogus gso_type");
        assertNotNull(new NetHeader().gso(NetHeader.GSO_TCPV4, 0, 66).checksum(34, 16).transmitError(4000, ALL), "gso_size 0");
        assertNotNull(new NetHeader().checksum(4000, 16).transmitError(4000, ALL), "csum_start past the frame");
        assertNotNull(new NetHeader().checksum(34, 65000).transmitError(4000, ALL), "csum_offset past the frame");
        assertNotNull(new NetHeader().checksum(34, 16).transmitError(4000, 0), "NEEDS_CSUM without CSUM");
        assertNotNull(tsoHeader(true).transmitError(4000, noTso6), "TSO6 not negotiated");
        assertNotNull(new NetHeader().gso(NetHeader.GSO_TCPV4, 1448, 66).transmitError(4000, ALL), "GSO without NEEDS_CSUM");
        assertNotNull(tsoHeader(false).transmitError(NetHeader.MAX_GSO_FRAME + 1, ALL), "longer than 64 KiB");
        MemorySegment raw = MemorySegment.ofArray(new byte[] {(byte) 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0});
        assertNotNull(new NetHeader().read(raw, 0).transmitError(100, ALL), "unknown flags");
    }

    @Test
    void shouldHandAGuestOnlyTheOffloadsItAccepted() {
        NetHeader tso = tsoHeader(false);
        assertTrue(tso.acceptedBy(ALL));
        assertTrue(!tso.acceptedBy(VirtioFeatures.bit(NET_GUEST_CSUM)), "checksum yes, TSO no");
        assertTrue(!new NetHeader().checksum(34, 16).acceptedBy(0), "no GUEST_CSUM");
        assertTrue(new NetHeader().acceptedBy(0), "a plain frame goes to anyone");
    }
}
