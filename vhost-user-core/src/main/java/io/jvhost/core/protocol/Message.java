package io.jvhost.core.protocol;

import io.jvhost.core.sys.Fd;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One decoded vhost-user message: the 12-byte header fields, the payload bytes and the fds that
 * came with it. The receiver owns the fds: whoever consumes a message closes what it does not keep.
 */
public record Message(int request, int flags, byte[] payload, Fd[] fds) {
    public static final int HEADER_SIZE = 12;
    public static final int VERSION = 0x1, VERSION_MASK = 0x3, REPLY = 0x4, NEED_REPLY = 0x8;
    /** Larger than any request the protocol defines (GET_CONFIG: 12 + 256). */
    public static final int MAX_PAYLOAD = 4096;

    public boolean needsReply() {
        return (flags & NEED_REPLY) != 0;
    }

    public int size() {
        return payload.length;
    }

    public ByteBuffer buffer() {
        return ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN);
    }

    public long u64(int offset) {
        return buffer().getLong(offset);
    }

    public int u32(int offset) {
        return buffer().getInt(offset);
    }

    public void closeFds() {
        Fd.closeAll(fds);
    }

    public String name() {
        return MessageType.name(request);
    }
}
