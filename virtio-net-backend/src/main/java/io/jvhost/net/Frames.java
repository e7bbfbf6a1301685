package io.jvhost.net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** Ethernet helpers: MAC addresses as longs (first byte highest), and a few frames jvhost makes. */
public final class Frames {
    public static final long BROADCAST = 0xFFFF_FFFF_FFFFL;
    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfShort BE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Frames() {}

    /** The 48-bit MAC at {@code offset} of a frame. */
    public static long mac(MemorySegment frame, long offset) {
        return (Integer.toUnsignedLong(frame.get(BE_INT, offset)) << 16)
                | Short.toUnsignedInt(frame.get(BE_SHORT, offset + 4));
    }

    /** The destination MAC of the frame at {@code frameOffset} of {@code memory}. */
    public static long destination(MemorySegment memory, long frameOffset) {
        return mac(memory, frameOffset);
    }

    /** The source MAC of the frame at {@code frameOffset} of {@code memory}. */
    public static long source(MemorySegment memory, long frameOffset) {
        return mac(memory, frameOffset + 6);
    }

    public static void putMac(MemorySegment frame, long offset, long mac) {
        frame.set(BE_INT, offset, (int) (mac >>> 16));
        frame.set(BE_SHORT, offset + 4, (short) mac);
    }

    /**
     * Stores the MACs of the frame at {@code fromOffset} of {@code from} swapped (its source as the
     * destination, its destination as the source) as bytes 0-11 of the frame at {@code toOffset} of
     * {@code to}: one long and one int loaded, two stored (a reflecting port's per-frame work; four
     * loads and four stores through {@link #mac}/{@link #putMac} made a split loopback round 11 %
     * slower per frame in {@code LoopbackBench}).
     */
    public static void putSwappedMacs(MemorySegment from, long fromOffset, MemorySegment to, long toOffset) {
        long head = from.get(LE_LONG, fromOffset); // the destination, then the source's first 2 bytes
        long tail = Integer.toUnsignedLong(from.get(LE_INT, fromOffset + 8)); // the source's last 4
        long dst = head & 0xFFFF_FFFF_FFFFL, src = head >>> 48 | tail << 16;
        to.set(LE_LONG, toOffset, src | dst << 48);
        to.set(LE_INT, toOffset + 8, (int) (dst >>> 16));
    }

    /** Multicast and broadcast destinations have the group bit set. */
    public static boolean isGroup(long mac) {
        return (mac & 0x0100_0000_0000L) != 0;
    }

    public static long parseMac(String text) {
        String[] parts = text.split(":");
        if (parts.length != 6) {
            throw new IllegalArgumentException("not a MAC address: " + text);
        }
        long mac = 0;
        for (String p : parts) {
            mac = mac << 8 | Integer.parseInt(p, 16);
        }
        return mac;
    }

    public static String macString(long mac) {
        return String.format("%02x:%02x:%02x:%02x:%02x:%02x", mac >>> 40 & 0xFF, mac >>> 32 & 0xFF, mac >>> 24 & 0xFF,
                mac >>> 16 & 0xFF, mac >>> 8 & 0xFF, mac & 0xFF);
    }

    /** A broadcast RARP request announcing {@code mac}, as QEMU sends after a migration. */
    public static byte[] rarp(long mac) {
        ByteBuffer b = ByteBuffer.allocate(60).order(ByteOrder.BIG_ENDIAN);
        b.put(new byte[] {-1, -1, -1, -1, -1, -1});
        putMac(b, mac);
        b.putShort((short) 0x8035); // RARP
        b.putShort((short) 1).putShort((short) 0x0800).put((byte) 6).put((byte) 4).putShort((short) 3);
        putMac(b, mac);
        b.putInt(0);
        putMac(b, mac);
        b.putInt(0);
        return b.array();
    }

    private static void putMac(ByteBuffer b, long mac) {
        for (int i = 5; i >= 0; i--) {
            b.put((byte) (mac >>> (8 * i)));
        }
    }

    /** A UDP/IPv4 test frame of {@code length} bytes (>= 60) from {@code src} to {@code dst}. */
    public static byte[] udp(long src, long dst, int length) {
        ByteBuffer b = ByteBuffer.allocate(Math.max(60, length)).order(ByteOrder.BIG_ENDIAN);
        putMac(b, dst);
        putMac(b, src);
        b.putShort((short) 0x0800);
        int ipLength = b.capacity() - 14;
        b.put((byte) 0x45).put((byte) 0).putShort((short) ipLength).putInt(0).put((byte) 64).put((byte) 17)
                .putShort((short) 0).putInt(0xC0A8_0001).putInt(0xC0A8_0002);
        int sum = 0;
        for (int i = 14; i < 34; i += 2) {
            sum += b.getShort(i) & 0xFFFF;
        }
        sum = (sum & 0xFFFF) + (sum >>> 16);
        b.putShort(24, (short) ~((sum & 0xFFFF) + (sum >>> 16)));
        b.putShort((short) 9).putShort((short) 9).putShort((short) (ipLength - 20)).putShort((short) 0);
        return b.array();
    }
}
