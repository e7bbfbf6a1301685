package io.jvhost.core.protocol;

import java.util.Arrays;

/**
 * {@code VhostUserConfig} of GET_CONFIG and SET_CONFIG: offset, size and flags of a range of the
 * device's configuration space, then {@code size} bytes (zeros on a read). Decoding keeps the range
 * within {@link #MAX_CONFIG} bytes and the payload exactly as long as the range says.
 */
public record ConfigRequest(int offset, int size, int flags, byte[] data) {
    public static final int HEADER_SIZE = 12;
    /** The most config space a frontend may read or write (VHOST_USER_MAX_CONFIG_SIZE). */
    public static final int MAX_CONFIG = 256;

    public static ConfigRequest decode(byte[] payload, int fdCount) throws ProtocolException {
        if (payload.length < HEADER_SIZE || fdCount != 0) {
            throw new ProtocolException("config message of " + payload.length + " bytes, " + fdCount + " fds");
        }
        long offset = Integer.toUnsignedLong(Payload.u32(payload, 0)), size = Integer.toUnsignedLong(Payload.u32(payload, 4));
        if (size > MAX_CONFIG || offset > MAX_CONFIG || offset + size > MAX_CONFIG || payload.length != HEADER_SIZE + size) {
            throw new ProtocolException("config range " + offset + "+" + size + " in " + payload.length + " bytes");
        }
        return new ConfigRequest((int) offset, (int) size, Payload.u32(payload, 8),
                Arrays.copyOfRange(payload, HEADER_SIZE, payload.length));
    }

    /** The GET_CONFIG / SET_CONFIG payload: offset, size, flags, then {@code data}. */
    public byte[] encode() {
        byte[] b = new byte[HEADER_SIZE + data.length];
        Payload.putU32(b, 0, offset);
        Payload.putU32(b, 4, size);
        Payload.putU32(b, 8, flags);
        System.arraycopy(data, 0, b, HEADER_SIZE, data.length);
        return b;
    }

    /**
     * The GET_CONFIG reply: this request's header, then its range of {@code config}; bytes past
     * the end of {@code config} read as zero, so that generic frontends reading the whole
     * {@link #MAX_CONFIG} bytes attach.
     */
    public byte[] reply(byte[] config) {
        byte[] reply = new byte[HEADER_SIZE + size];
        Payload.putU32(reply, 0, offset);
        Payload.putU32(reply, 4, size);
        Payload.putU32(reply, 8, flags);
        if (offset < config.length) {
            System.arraycopy(config, offset, reply, HEADER_SIZE, Math.min(size, config.length - offset));
        }
        return reply;
    }
}
