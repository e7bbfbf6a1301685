package io.jvhost.core.protocol;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * Little-endian fields of a message payload, and the size and fd-count check every decoder starts
 * with. Pure; any thread.
 */
public final class Payload {
    public static final byte[] NONE = new byte[0];
    private static final VarHandle U16 = MethodHandles.byteArrayViewVarHandle(short[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle U32 = MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle U64 = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

    private Payload() {}

    /** Refuses a payload that is not exactly {@code size} bytes with exactly {@code fds} fds. */
    public static void expect(byte[] payload, int fdCount, int size, int fds) throws ProtocolException {
        if (payload.length != size) {
            throw new ProtocolException("payload of " + payload.length + " bytes, expected " + size);
        }
        if (fdCount != fds) {
            throw new ProtocolException(fdCount + " fds, expected " + fds);
        }
    }

    /** The payload of SET_FEATURES, SET_PROTOCOL_FEATURES, SET_STATUS, NET_SET_MTU, SEND_RARP: one u64, no fds. */
    public static long decodeU64(byte[] payload, int fdCount) throws ProtocolException {
        expect(payload, fdCount, 8, 0);
        return u64(payload, 0);
    }

    /** A u64 payload: the replies of GET_FEATURES, GET_QUEUE_NUM, ... and every REPLY_ACK ack. */
    public static byte[] encodeU64(long value) {
        byte[] b = new byte[8];
        U64.set(b, 0, value);
        return b;
    }

    public static int u16(byte[] payload, int offset) {
        return Short.toUnsignedInt((short) U16.get(payload, offset));
    }

    public static int u32(byte[] payload, int offset) {
        return (int) U32.get(payload, offset);
    }

    public static long u64(byte[] payload, int offset) {
        return (long) U64.get(payload, offset);
    }

    static void putU16(byte[] payload, int offset, int value) {
        U16.set(payload, offset, (short) value);
    }

    public static void putU32(byte[] payload, int offset, int value) {
        U32.set(payload, offset, value);
    }

    static void putU64(byte[] payload, int offset, long value) {
        U64.set(payload, offset, value);
    }
}
