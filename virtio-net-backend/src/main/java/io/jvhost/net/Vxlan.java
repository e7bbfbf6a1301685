package io.jvhost.net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The VXLAN header (RFC 7348 §5) and the inner-flow hash, as pure functions over memory: no state,
 * no I/O, no allocation.
 *
 * <pre>
 *  0                   1                   2                   3
 * |R|R|R|R|I|R|R|R|            Reserved                           |
 * |                VXLAN Network Identifier (VNI) |   Reserved    |
 * </pre>
 */
public final class Vxlan {
    /** The IANA port (RFC 7348 §5), Linux's {@code dstport 4789}. */
    public static final int DEFAULT_PORT = 4789;
    public static final int HEADER_LENGTH = 8;
    public static final int MAX_VNI = (1 << 24) - 1;
    static final int FLAG_I = 0x08;
    static final int ETHERNET_HEADER = 14;
    private static final int UDP_HEADER = 8, IPV4_HEADER = 20, IPV6_HEADER = 40;

    /** What {@link #check} found: {@link #OK} or why the packet is dropped. */
    public static final int OK = 0, TRUNCATED = 1, NO_I_FLAG = 2, WRONG_VNI = 3, FRAME_TOO_SHORT = 4,
            FRAME_TOO_LONG = 5;

    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfShort BE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    private Vxlan() {}

    /**
     * Bytes a frame grows by on the underlay: outer IPv4 (20) or IPv6 (40) header, UDP (8), VXLAN
     * (8) and the inner Ethernet header (14), which the guest's MTU does not count: 50 or 70. A
     * guest MTU of the underlay MTU less this fits unfragmented (Linux's vxlan sets its MTU so).
     */
    public static int overhead(boolean ipv6) {
        return (ipv6 ? IPV6_HEADER : IPV4_HEADER) + UDP_HEADER + HEADER_LENGTH + ETHERNET_HEADER;
    }

    /** Writes the 8-byte header for {@code vni} at {@code offset}: the I flag, everything reserved 0. */
    public static void putHeader(MemorySegment packet, long offset, int vni) {
        packet.set(BE_INT, offset, FLAG_I << 24);
        packet.set(BE_INT, offset + 4, vni << 8);
    }

    /** The VNI of the header at {@code offset}. */
    public static int vni(MemorySegment packet, long offset) {
        return packet.get(BE_INT, offset + 4) >>> 8;
    }

    /**
     * Checks a received VXLAN payload (the UDP payload, {@code length} bytes at {@code offset}):
     * a whole header with the I flag set, {@code vni}, and an inner frame of 14..{@code maxFrame}
     * bytes. Reserved bits and the other flags are ignored, as RFC 7348 §5 asks of a receiver.
     */
    public static int check(MemorySegment packet, long offset, long length, int vni, int maxFrame) {
        if (length < HEADER_LENGTH) {
            return TRUNCATED;
        }
        if ((packet.get(ValueLayout.JAVA_BYTE, offset) & FLAG_I) == 0) {
            return NO_I_FLAG;
        }
        if (vni(packet, offset) != vni) {
            return WRONG_VNI;
        }
        long frame = length - HEADER_LENGTH;
        if (frame < ETHERNET_HEADER) {
            return FRAME_TOO_SHORT;
        }
        return frame > maxFrame ? FRAME_TOO_LONG : OK;
    }

    /**
     * A hash of the inner frame's flow, for the outer UDP source port (RFC 7348 §5: "a hash of
     * fields from the inner packet"), so an underlay spreading by 5-tuple keeps each flow on one
     * path: the IPv4 or IPv6 addresses and protocol, and the TCP/UDP/SCTP ports of unfragmented
     * packets (one VLAN tag is looked through); the MACs and ethertype of anything else. Like
     * Linux's flow dissector, which its vxlan device uses. Reads only inside the frame.
     */
    public static int flowHash(MemorySegment frame, long offset, long length) {
        if (length < ETHERNET_HEADER) {
            return 0;
        }
        long at = offset + 12;
        int type = Short.toUnsignedInt(frame.get(BE_SHORT, at));
        if (type == 0x8100 && length >= ETHERNET_HEADER + 4) {
            at += 4;
            type = Short.toUnsignedInt(frame.get(BE_SHORT, at));
        }
        at += 2;
        long end = offset + length;
        long h;
        if (type == 0x0800 && end - at >= IPV4_HEADER) {
            int ihl = (frame.get(ValueLayout.JAVA_BYTE, at) & 0xF) * 4;
            int protocol = frame.get(ValueLayout.JAVA_BYTE, at + 9) & 0xFF;
            boolean fragment = (frame.get(BE_SHORT, at + 6) & 0x3FFF) != 0; // MF or an offset
            h = mix(frame.get(BE_INT, at + 12), frame.get(BE_INT, at + 16)) ^ protocol;
            h = ports(h, frame, at + ihl, end, protocol, fragment || ihl < IPV4_HEADER);
        } else if (type == 0x86DD && end - at >= IPV6_HEADER) {
            int next = frame.get(ValueLayout.JAVA_BYTE, at + 6) & 0xFF;
            h = next;
            for (long a = at + 8; a < at + 40; a += 8) {
                h = mix(h, frame.get(ValueLayout.JAVA_LONG_UNALIGNED, a));
            }
            h = ports(h, frame, at + IPV6_HEADER, end, next, false);
        } else {
            h = mix(Frames.destination(frame, offset), Frames.source(frame, offset)) ^ type;
        }
        return (int) fmix(h);
    }

    private static long ports(long h, MemorySegment frame, long at, long end, int protocol, boolean noPorts) {
        boolean hasPorts = protocol == 6 || protocol == 17 || protocol == 132;
        return hasPorts && !noPorts && end - at >= 4 ? mix(h, frame.get(BE_INT, at)) : h;
    }

    private static long mix(long h, long v) {
        return (h ^ fmix(v)) * 0x9E37_79B9_7F4A_7C15L;
    }

    /** MurmurHash3's 64-bit finalizer: every input bit reaches every output bit. */
    private static long fmix(long k) {
        k ^= k >>> 33;
        k *= 0xFF51_AFD7_ED55_8CCDL;
        k ^= k >>> 33;
        k *= 0xC4CE_B9FE_1A85_EC53L;
        return k ^ (k >>> 33);
    }
}
