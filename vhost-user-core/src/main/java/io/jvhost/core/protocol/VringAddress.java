package io.jvhost.core.protocol;

/**
 * {@code struct vhost_vring_addr} of SET_VRING_ADDR: where the frontend mapped the three parts of
 * a split ring (its own virtual addresses) and, with {@link #F_LOG}, the used ring's guest-physical
 * address for the dirty log. Decoding refuses unknown flags and misaligned rings (desc 16,
 * avail 2, used 4 bytes), whatever the queue.
 */
public record VringAddress(long index, int flags, long descHva, long usedHva, long availHva, long logGpa) {
    public static final int SIZE = 40;
    /** VHOST_VRING_F_LOG: log writes to the used ring at {@link #logGpa}. */
    public static final int F_LOG = 1;

    public static VringAddress decode(byte[] payload, int fdCount) throws ProtocolException {
        Payload.expect(payload, fdCount, SIZE, 0);
        long index = Integer.toUnsignedLong(Payload.u32(payload, 0));
        long flags = Integer.toUnsignedLong(Payload.u32(payload, 4));
        long desc = Payload.u64(payload, 8), used = Payload.u64(payload, 16), avail = Payload.u64(payload, 24);
        long log = Payload.u64(payload, 32);
        if ((flags & ~F_LOG) != 0) {
            throw new ProtocolException("unknown vring address flags 0x" + Long.toHexString(flags));
        }
        if ((desc & 15) != 0 || (avail & 1) != 0 || (used & 3) != 0) {
            throw new ProtocolException(String.format("misaligned rings desc 0x%x avail 0x%x used 0x%x", desc, avail, used));
        }
        return new VringAddress(index, (int) flags, desc, used, avail, log);
    }

    /** Whether writes to the used ring go to the dirty log (at {@link #logGpa}). */
    public boolean logged() {
        return (flags & F_LOG) != 0;
    }

    public byte[] encode() {
        byte[] b = new byte[SIZE];
        Payload.putU32(b, 0, (int) index);
        Payload.putU32(b, 4, flags);
        Payload.putU64(b, 8, descHva);
        Payload.putU64(b, 16, usedHva);
        Payload.putU64(b, 24, availHva);
        Payload.putU64(b, 32, logGpa);
        return b;
    }
}
