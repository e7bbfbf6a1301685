package io.jvhost.core.protocol;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The 12-byte header every vhost-user message starts with, on either channel and in either
 * direction: request code, flags, payload size (all u32, little-endian). The one place that
 * encodes and decodes it: the backend's connection, its backend channel and the frontend
 * simulator all go through here. Pure: no state, no I/O; any thread.
 *
 * @param request the request code ({@link MessageType}, or {@link BackendMessageType} on the backend channel)
 * @param flags   version (bits 0-1), {@link #REPLY} and {@link #NEED_REPLY}
 * @param size    payload bytes that follow, as the unsigned 32-bit field says
 */
public record Header(int request, int flags, long size) {
    public static final int SIZE = 12;
    public static final int VERSION = 0x1, VERSION_MASK = 0x3, REPLY = 0x4, NEED_REPLY = 0x8;
    /** Flags a request may carry: the version, NEED_REPLY, and REPLY (which only a reply may set). */
    public static final int KNOWN_FLAGS = 0xF;
    /** Larger than any request the protocol defines (GET_CONFIG: 12 + 256). */
    public static final int MAX_PAYLOAD = 4096;
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Reads a header from the first {@link #SIZE} bytes of {@code bytes}, unchecked. */
    public static Header decode(MemorySegment bytes) {
        return new Header(bytes.get(LE_INT, 0), bytes.get(LE_INT, 4), Integer.toUnsignedLong(bytes.get(LE_INT, 8)));
    }

    /** {@link #decode(MemorySegment)} of a byte array of at least {@link #SIZE} bytes. */
    public static Header decode(byte[] bytes) {
        return decode(MemorySegment.ofArray(bytes));
    }

    /** Writes a header into the first {@link #SIZE} bytes of {@code buffer}. */
    public static void encode(MemorySegment buffer, int request, int flags, int size) {
        buffer.set(LE_INT, 0, request);
        buffer.set(LE_INT, 4, flags);
        buffer.set(LE_INT, 8, size);
    }

    /** A whole message: the header for {@code payload}, then the payload. */
    public static byte[] encode(int request, int flags, byte[] payload) {
        byte[] bytes = new byte[SIZE + payload.length];
        encode(MemorySegment.ofArray(bytes), request, flags, payload.length);
        System.arraycopy(payload, 0, bytes, SIZE, payload.length);
        return bytes;
    }

    public boolean needsReply() {
        return (flags & NEED_REPLY) != 0;
    }

    public boolean isReply() {
        return (flags & REPLY) != 0;
    }

    /**
     * Checks a header a frontend sent: version 1, no unknown flag, not a reply, a payload of at
     * most {@link #MAX_PAYLOAD} bytes. Any failure breaks the framing, so it is fatal.
     */
    public Header checkRequest() throws ProtocolException {
        if ((flags & VERSION_MASK) != VERSION || (flags & ~KNOWN_FLAGS) != 0 || (flags & REPLY) != 0) {
            throw new ProtocolException(String.format("bad header flags 0x%x on request %d", flags, request), true);
        }
        if (size > MAX_PAYLOAD) {
            throw new ProtocolException("payload of " + size + " bytes on request " + request, true);
        }
        return this;
    }
}
