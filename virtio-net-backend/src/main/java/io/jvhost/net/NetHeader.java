package io.jvhost.net;

import io.jvhost.core.device.VirtioFeatures;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static io.jvhost.core.device.VirtioFeatures.*;

/**
 * The offload part of a virtio-net header (virtio 1.2 §5.1.6): whether the frame still needs its
 * transport checksum, and whether it is one large segment (GSO) to be cut into MTU-sized frames.
 * Mutable and reused per queue pair, so that nothing is allocated per frame; a port reads it only
 * during the call it was handed in. Linux's TAP uses the same layout (IFF_VNET_HDR).
 */
public final class NetHeader {
    /** The first 10 bytes; num_buffers (2 more) belongs to the receive path. */
    public static final int SIZE = 10;
    public static final int F_NEEDS_CSUM = 1, F_DATA_VALID = 2;
    public static final int GSO_NONE = 0, GSO_TCPV4 = 1, GSO_UDP = 3, GSO_TCPV6 = 4, GSO_UDP_L4 = 5, GSO_ECN = 0x80;
    /** The largest GSO frame: 64 KiB of IP packet behind an Ethernet header and a VLAN tag. */
    public static final int MAX_GSO_FRAME = 65535 + NetDevice.ETHERNET_HEADER + NetDevice.VLAN_TAG;
    /** The offloads the guest may ask of the device, and the device of the guest, that jvhost implements. */
    public static final long HOST_OFFLOADS = bit(NET_CSUM) | bit(NET_HOST_TSO4) | bit(NET_HOST_TSO6) | bit(NET_HOST_ECN);
    public static final long GUEST_OFFLOADS = bit(NET_GUEST_CSUM) | bit(NET_GUEST_TSO4) | bit(NET_GUEST_TSO6)
            | bit(NET_GUEST_ECN);

    private static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private int flags, gsoType, hdrLen, gsoSize, csumStart, csumOffset;

    public int flags() {
        return flags;
    }

    /** The GSO type without the ECN bit. */
    public int gsoType() {
        return gsoType & ~GSO_ECN;
    }

    public boolean ecn() {
        return (gsoType & GSO_ECN) != 0;
    }

    public int hdrLen() {
        return hdrLen;
    }

    public int gsoSize() {
        return gsoSize;
    }

    public int csumStart() {
        return csumStart;
    }

    public int csumOffset() {
        return csumOffset;
    }

    public boolean needsChecksum() {
        return (flags & F_NEEDS_CSUM) != 0;
    }

    public boolean isGso() {
        return gsoType() != GSO_NONE;
    }

    /** A header that asks nothing: a complete frame with a valid (or no) checksum. */
    public boolean isPlain() {
        return (flags & F_NEEDS_CSUM) == 0 && gsoType == GSO_NONE;
    }

    public NetHeader clear() {
        flags = gsoType = hdrLen = gsoSize = csumStart = csumOffset = 0;
        return this;
    }

    /** Asks for the transport checksum: the 16-bit ones' complement sum from {@code start}, stored at {@code start + offset}. */
    public NetHeader checksum(int start, int offset) {
        flags |= F_NEEDS_CSUM;
        csumStart = start;
        csumOffset = offset;
        return this;
    }

    /** Marks the frame as one segment of {@code type} ({@link #GSO_TCPV4}...) to cut into {@code size}-byte payloads. */
    public NetHeader gso(int type, int size, int headerLength) {
        gsoType = type;
        gsoSize = size;
        hdrLen = headerLength;
        return this;
    }

    public NetHeader dataValid() {
        flags |= F_DATA_VALID;
        return this;
    }

    public NetHeader copyFrom(NetHeader h) {
        flags = h.flags;
        gsoType = h.gsoType;
        hdrLen = h.hdrLen;
        gsoSize = h.gsoSize;
        csumStart = h.csumStart;
        csumOffset = h.csumOffset;
        return this;
    }

    /** Reads the 10 header bytes at {@code offset} (little endian, as virtio 1.x and x86 TAPs have them). */
    public NetHeader read(MemorySegment m, long offset) {
        flags = Byte.toUnsignedInt(m.get(ValueLayout.JAVA_BYTE, offset));
        gsoType = Byte.toUnsignedInt(m.get(ValueLayout.JAVA_BYTE, offset + 1));
        hdrLen = Short.toUnsignedInt(m.get(LE_SHORT, offset + 2));
        gsoSize = Short.toUnsignedInt(m.get(LE_SHORT, offset + 4));
        csumStart = Short.toUnsignedInt(m.get(LE_SHORT, offset + 6));
        csumOffset = Short.toUnsignedInt(m.get(LE_SHORT, offset + 8));
        return this;
    }

    /** Writes the 10 header bytes at {@code offset}. */
    public void write(MemorySegment m, long offset) {
        m.set(ValueLayout.JAVA_BYTE, offset, (byte) flags);
        m.set(ValueLayout.JAVA_BYTE, offset + 1, (byte) gsoType);
        m.set(LE_SHORT, offset + 2, (short) hdrLen);
        m.set(LE_SHORT, offset + 4, (short) gsoSize);
        m.set(LE_SHORT, offset + 6, (short) csumStart);
        m.set(LE_SHORT, offset + 8, (short) csumOffset);
    }

    /**
     * Why a header the guest sent with a {@code length}-byte frame cannot be honoured, given the
     * features it negotiated; null when it can. A driver must not ask for what it did not negotiate
     * (virtio 1.2 §5.1.6.2), and nothing here may point outside the frame.
     */
    public String transmitError(long length, long features) {
        if ((flags & ~(F_NEEDS_CSUM | F_DATA_VALID)) != 0) {
            return "unknown flags 0x" + Integer.toHexString(flags);
        }
        if (needsChecksum()) {
            if (!VirtioFeatures.has(features, NET_CSUM)) {
                return "NEEDS_CSUM without the CSUM feature";
            }
            if (csumStart < NetDevice.ETHERNET_HEADER || (long) csumStart + csumOffset + 2 > length) {
                return "checksum at " + csumStart + "+" + csumOffset + " outside the " + length + "-byte frame";
            }
        }
        if (gsoType == GSO_NONE) {
            return null;
        }
        int needed = switch (gsoType()) {
            case GSO_TCPV4 -> NET_HOST_TSO4;
            case GSO_TCPV6 -> NET_HOST_TSO6;
            default -> -1;
        };
        if (needed < 0) {
            return "unknown gso_type 0x" + Integer.toHexString(gsoType);
        }
        if (!VirtioFeatures.has(features, needed) || (ecn() && !VirtioFeatures.has(features, NET_HOST_ECN))) {
            return "gso_type 0x" + Integer.toHexString(gsoType) + " not negotiated";
        }
        if (gsoSize == 0) {
            return "gso_size 0";
        }
        if (!needsChecksum()) {
            return "GSO without NEEDS_CSUM";
        }
        return length > MAX_GSO_FRAME ? "GSO frame of " + length + " bytes" : null;
    }

    /** Whether a guest that negotiated {@code features} may be given a frame with this header as it is. */
    public boolean acceptedBy(long features) {
        if (needsChecksum() && !VirtioFeatures.has(features, NET_GUEST_CSUM)) {
            return false;
        }
        return switch (gsoType()) {
            case GSO_NONE -> true;
            case GSO_TCPV4 -> VirtioFeatures.has(features, NET_GUEST_TSO4) && (!ecn() || VirtioFeatures.has(features, NET_GUEST_ECN));
            case GSO_TCPV6 -> VirtioFeatures.has(features, NET_GUEST_TSO6) && (!ecn() || VirtioFeatures.has(features, NET_GUEST_ECN));
            default -> false;
        };
    }

    @Override
    public String toString() {
        return "flags " + flags + " gso " + gsoType + " hdr_len " + hdrLen + " gso_size " + gsoSize + " csum " + csumStart
                + "+" + csumOffset;
    }
}
