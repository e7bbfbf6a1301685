package io.jvhost.net;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Does in software what a NIC's checksum and TCP segmentation offload do, for a destination that
 * cannot take a frame's offloads as they are: a guest that did not negotiate them, or a port that
 * takes plain frames. Cuts a TCP GSO frame (IPv4 or IPv6) into MTU-sized frames with their IP
 * lengths, IPv4 ids and header checksums, TCP sequence numbers, flags and checksums set, or
 * completes one frame's checksum. Each result goes to a {@link Sink} in a scratch buffer of its own.
 *
 * <p>One per thread (each poller has its own); allocation-free. The input is never written: it may
 * be the guest's memory. Every offset is checked against the frame before use, so a hostile header
 * yields a counted refusal, never an access outside the frame.
 */
public final class Segmenter {
    /** Where each finished frame goes: {@code [0, length)} of {@code frame}, valid during the call. */
    @FunctionalInterface
    public interface Sink {
        void accept(MemorySegment frame, long length);
    }

    public static final int DONE = 0, MALFORMED = -1, TOO_BIG = -2;
    private static final ValueLayout.OfShort BE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final int ETHERTYPE_VLAN = 0x8100, ETHERTYPE_IPV4 = 0x0800, ETHERTYPE_IPV6 = 0x86DD;
    private static final int TCP = 6, TCP_FIN = 0x01, TCP_PSH = 0x08, TCP_CWR = 0x80;

    private final MemorySegment scratch;
    private long malformed;

    /** @param maxFrame the largest frame the results may be (header included) */
    public Segmenter(int maxFrame) {
        this.scratch = Arena.ofAuto().allocate(Math.max(maxFrame, 64), 64);
    }

    /** Frames refused so far: headers that point outside the frame or at something not TCP/IP. */
    public long malformed() {
        return malformed;
    }

    /**
     * Completes {@code header}'s offloads on the frame {@code [offset, offset + length)} of
     * {@code memory} and hands {@code sink} the plain frame(s), each at most {@code mtuFrame} bytes
     * when segmenting. Returns {@link #DONE}, {@link #MALFORMED} or {@link #TOO_BIG}.
     */
    public int resolve(NetHeader header, MemorySegment memory, long offset, long length, int mtuFrame, Sink sink) {
        int r = header.isGso() ? segment(header, memory, offset, length, mtuFrame, sink)
                : header.needsChecksum() ? checksumOnly(header, memory, offset, length, sink)
                : plain(memory, offset, length, sink);
        if (r == MALFORMED) {
            malformed++;
        }
        return r;
    }

    private int plain(MemorySegment memory, long offset, long length, Sink sink) {
        if (length > scratch.byteSize()) {
            return TOO_BIG;
        }
        MemorySegment.copy(memory, offset, scratch, 0, length);
        sink.accept(scratch, length);
        return DONE;
    }

    private int checksumOnly(NetHeader h, MemorySegment memory, long offset, long length, Sink sink) {
        long start = h.csumStart(), at = start + h.csumOffset();
        if (start >= length || at + 2 > length) {
            return MALFORMED;
        }
        if (length > scratch.byteSize()) {
            return TOO_BIG;
        }
        MemorySegment.copy(memory, offset, scratch, 0, length);
        // The driver left the pseudo-header's sum in the field (virtio 1.2 §5.1.6.2): fold in the rest.
        int checksum = ~fold(sum(scratch, start, length - start, 0)) & 0xFFFF;
        scratch.set(BE_SHORT, at, (short) (checksum == 0 && h.csumOffset() == 6 ? 0xFFFF : checksum)); // UDP: 0 means none
        sink.accept(scratch, length);
        return DONE;
    }

    private int segment(NetHeader h, MemorySegment memory, long offset, long length, int mtuFrame, Sink sink) {
        boolean v6 = h.gsoType() == NetHeader.GSO_TCPV6;
        if (h.gsoType() != NetHeader.GSO_TCPV4 && !v6 || length < 14) {
            return MALFORMED;
        }
        int l3 = 14;
        int type = Short.toUnsignedInt(memory.get(BE_SHORT, offset + 12));
        if (type == ETHERTYPE_VLAN) {
            if (length < 18) {
                return MALFORMED;
            }
            l3 = 18;
            type = Short.toUnsignedInt(memory.get(BE_SHORT, offset + 16));
        }
        if (type != (v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4)) {
            return MALFORMED;
        }
        int l4;
        if (v6) {
            l4 = l3 + 40; // extension headers are not segmented here: next header must be TCP
            if (length < l4 + 20 || Byte.toUnsignedInt(memory.get(ValueLayout.JAVA_BYTE, offset + l3 + 6)) != TCP) {
                return MALFORMED;
            }
        } else {
            if (length < l3 + 20) {
                return MALFORMED;
            }
            int ihl = (memory.get(ValueLayout.JAVA_BYTE, offset + l3) & 0x0F) * 4;
            l4 = l3 + ihl;
            if (ihl < 20 || length < l4 + 20 || Byte.toUnsignedInt(memory.get(ValueLayout.JAVA_BYTE, offset + l3 + 9)) != TCP) {
                return MALFORMED;
            }
        }
        int tcpLength = (Byte.toUnsignedInt(memory.get(ValueLayout.JAVA_BYTE, offset + l4 + 12)) >>> 4) * 4;
        int headers = l4 + tcpLength;
        int mss = h.gsoSize();
        if (tcpLength < 20 || headers > length || mss == 0) {
            return MALFORMED;
        }
        if (headers + Math.min(mss, length - headers) > Math.min(mtuFrame, scratch.byteSize())) {
            return TOO_BIG; // a segment would not fit the destination's MTU
        }
        long payload = length - headers;
        int seq = memory.get(BE_INT, offset + l4 + 4);
        int ipId = v6 ? 0 : Short.toUnsignedInt(memory.get(BE_SHORT, offset + l3 + 4));
        int flags = Byte.toUnsignedInt(memory.get(ValueLayout.JAVA_BYTE, offset + l4 + 13));
        long done = 0;
        for (int i = 0; done < payload || i == 0; i++) {
            long chunk = Math.min(mss, payload - done);
            boolean last = done + chunk >= payload;
            long segLength = headers + chunk;
            MemorySegment.copy(memory, offset, scratch, 0, headers);
            MemorySegment.copy(memory, offset + headers + done, scratch, headers, chunk);
            if (v6) {
                scratch.set(BE_SHORT, l3 + 4, (short) (segLength - l3 - 40));
            } else {
                scratch.set(BE_SHORT, l3 + 2, (short) (segLength - l3));
                scratch.set(BE_SHORT, l3 + 4, (short) (ipId + i));
                scratch.set(BE_SHORT, l3 + 10, (short) 0);
                scratch.set(BE_SHORT, l3 + 10, (short) ~fold(sum(scratch, l3, l4 - l3, 0)));
            }
            scratch.set(BE_INT, l4 + 4, seq + (int) done);
            int f = flags;
            if (!last) {
                f &= ~(TCP_FIN | TCP_PSH);
            }
            if (i > 0) {
                f &= ~TCP_CWR;
            }
            scratch.set(ValueLayout.JAVA_BYTE, l4 + 13, (byte) f);
            scratch.set(BE_SHORT, l4 + 16, (short) 0);
            long tcpBytes = segLength - l4;
            long pseudo = v6 ? sum(scratch, l3 + 8, 32, 0) : sum(scratch, l3 + 12, 8, 0);
            pseudo += TCP + tcpBytes;
            scratch.set(BE_SHORT, l4 + 16, (short) ~fold(sum(scratch, l4, tcpBytes, pseudo)));
            sink.accept(scratch, segLength);
            done += chunk;
        }
        return DONE;
    }

    /** The ones' complement sum (RFC 1071) of {@code length} bytes at {@code offset}, added to {@code initial}, not folded. */
    static long sum(MemorySegment m, long offset, long length, long initial) {
        long s = initial;
        long i = 0;
        for (; i + 4 <= length; i += 4) {
            s += Integer.toUnsignedLong(m.get(BE_INT, offset + i));
        }
        if (i + 2 <= length) {
            s += Short.toUnsignedInt(m.get(BE_SHORT, offset + i));
            i += 2;
        }
        if (i < length) {
            s += Byte.toUnsignedInt(m.get(ValueLayout.JAVA_BYTE, offset + i)) << 8;
        }
        return s;
    }

    /** Folds a sum to 16 bits. */
    static int fold(long s) {
        while ((s >>> 16) != 0) {
            s = (s & 0xFFFF) + (s >>> 16);
        }
        return (int) s;
    }
}
