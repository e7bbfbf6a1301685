package io.jvhost.core.protocol;

/**
 * {@code struct vhost_vring_state}: the payload of SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE,
 * SET_VRING_ENABLE and of the GET_VRING_BASE reply. Both fields are unsigned 32-bit; what range
 * {@code num} may take depends on the request and the queue, which the runtime checks.
 */
public record VringState(long index, long num) {
    public static final int SIZE = 8;

    /** Exactly 8 bytes, no fds. */
    public static VringState decode(byte[] payload, int fdCount) throws ProtocolException {
        Payload.expect(payload, fdCount, SIZE, 0);
        return new VringState(Integer.toUnsignedLong(Payload.u32(payload, 0)), Integer.toUnsignedLong(Payload.u32(payload, 4)));
    }

    public static byte[] encode(int index, int num) {
        byte[] b = new byte[SIZE];
        Payload.putU32(b, 0, index);
        Payload.putU32(b, 4, num);
        return b;
    }
}
