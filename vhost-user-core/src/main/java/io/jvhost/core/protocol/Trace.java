package io.jvhost.core.protocol;

import static io.jvhost.core.protocol.MessageType.*;

/** Renders decoded messages for the debug-level protocol trace. */
public final class Trace {
    private Trace() {}

    public static String describe(Message m) {
        StringBuilder b = new StringBuilder(m.name());
        if (m.needsReply()) {
            b.append(" [need reply]");
        }
        try {
            switch (m.request()) {
                case SET_FEATURES, SET_PROTOCOL_FEATURES, SET_STATUS, NET_SET_MTU, SEND_RARP ->
                        b.append(String.format(" 0x%x", m.u64(0)));
                case SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ENABLE ->
                        b.append(" vring ").append(m.u32(0)).append(" = ").append(Integer.toUnsignedString(m.u32(4)));
                case SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR -> {
                    long v = m.u64(0);
                    b.append(" vring ").append(v & 0xFF).append((v & 0x100) != 0 ? " NOFD" : "");
                }
                case SET_VRING_ADDR -> b.append(String.format(" vring %d flags %x desc 0x%x used 0x%x avail 0x%x log 0x%x",
                        m.u32(0), m.u32(4), m.u64(8), m.u64(16), m.u64(24), m.u64(32)));
                case SET_MEM_TABLE -> {
                    int n = m.u32(0);
                    b.append(' ').append(n).append(" regions");
                    for (int i = 0; i < n && 8 + 32 * (i + 1) <= m.size(); i++) {
                        int o = 8 + 32 * i;
                        b.append(String.format(" [gpa 0x%x size 0x%x hva 0x%x off 0x%x]",
                                m.u64(o), m.u64(o + 8), m.u64(o + 16), m.u64(o + 24)));
                    }
                }
                case ADD_MEM_REG, REM_MEM_REG -> b.append(String.format(" gpa 0x%x size 0x%x hva 0x%x off 0x%x",
                        m.u64(8), m.u64(16), m.u64(24), m.u64(32)));
                case GET_CONFIG, SET_CONFIG -> b.append(" offset ").append(m.u32(0)).append(" size ").append(m.u32(4))
                        .append(" flags ").append(m.u32(8));
                default -> { }
            }
        } catch (IndexOutOfBoundsException e) {
            b.append(" (short payload)");
        }
        b.append(" (").append(m.size()).append(" bytes");
        if (m.fds().length > 0) {
            b.append(", ").append(m.fds().length).append(" fds");
        }
        return b.append(')').toString();
    }
}
