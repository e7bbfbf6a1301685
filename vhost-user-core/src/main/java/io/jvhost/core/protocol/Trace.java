package io.jvhost.core.protocol;

import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.core.protocol.Payload.u32;
import static io.jvhost.core.protocol.Payload.u64;

/** Renders decoded messages for the debug-level protocol trace. */
public final class Trace {
    private Trace() {}

    public static String describe(Message m) {
        byte[] p = m.payload();
        StringBuilder b = new StringBuilder(m.name());
        if (m.needsReply()) {
            b.append(" [need reply]");
        }
        try {
            switch (m.request()) {
                case SET_FEATURES, SET_PROTOCOL_FEATURES, SET_STATUS, NET_SET_MTU, SEND_RARP ->
                        b.append(String.format(" 0x%x", u64(p, 0)));
                case SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ENABLE ->
                        b.append(" vring ").append(u32(p, 0)).append(" = ").append(Integer.toUnsignedString(u32(p, 4)));
                case SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR -> {
                    long v = u64(p, 0);
                    b.append(" vring ").append(v & VringFd.INDEX_MASK).append((v & VringFd.NOFD) != 0 ? " NOFD" : "");
                }
                case SET_VRING_ADDR -> b.append(String.format(" vring %d flags %x desc 0x%x used 0x%x avail 0x%x log 0x%x",
                        u32(p, 0), u32(p, 4), u64(p, 8), u64(p, 16), u64(p, 24), u64(p, 32)));
                case SET_MEM_TABLE -> {
                    int n = u32(p, 0);
                    b.append(' ').append(n).append(" regions");
                    for (int i = 0; i < n && 8 + 32 * (i + 1) <= m.size(); i++) {
                        int o = 8 + 32 * i;
                        b.append(String.format(" [gpa 0x%x size 0x%x hva 0x%x off 0x%x]",
                                u64(p, o), u64(p, o + 8), u64(p, o + 16), u64(p, o + 24)));
                    }
                }
                case ADD_MEM_REG, REM_MEM_REG -> b.append(String.format(" gpa 0x%x size 0x%x hva 0x%x off 0x%x",
                        u64(p, 8), u64(p, 16), u64(p, 24), u64(p, 32)));
                case GET_CONFIG, SET_CONFIG -> b.append(" offset ").append(u32(p, 0)).append(" size ").append(u32(p, 4))
                        .append(" flags ").append(u32(p, 8));
                default -> { }
            }
        } catch (IndexOutOfBoundsException e) {
            b.append(" (short payload)");
        }
        b.append(" (").append(m.size()).append(" bytes");
        if (m.fdCount() > 0) {
            b.append(", ").append(m.fdCount()).append(" fds");
        }
        return b.append(')').toString();
    }
}
