package io.jvhost.core.protocol;

/**
 * The u64 of SET_VRING_KICK, SET_VRING_CALL and SET_VRING_ERR: the vring index in bits 0-7 and,
 * in bit 8, {@link #NOFD}: no fd comes with the message (polling instead of a kick, no call, no
 * err). Decoding refuses any other bit and an fd count that disagrees with NOFD.
 */
public record VringFd(int index, boolean noFd) {
    public static final int NOFD = 0x100, INDEX_MASK = 0xFF;

    public static VringFd decode(byte[] payload, int fdCount) throws ProtocolException {
        if (payload.length != 8) {
            throw new ProtocolException("payload of " + payload.length + " bytes, expected 8");
        }
        long v = Payload.u64(payload, 0);
        if ((v & ~(long) (NOFD | INDEX_MASK)) != 0) {
            throw new ProtocolException("unknown bits in 0x" + Long.toHexString(v));
        }
        boolean noFd = (v & NOFD) != 0;
        if (fdCount != (noFd ? 0 : 1)) {
            throw new ProtocolException(fdCount + " fds with NOFD " + noFd);
        }
        return new VringFd((int) (v & INDEX_MASK), noFd);
    }

    public byte[] encode() {
        return Payload.encodeU64(index | (noFd ? NOFD : 0));
    }
}
