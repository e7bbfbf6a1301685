package io.jvhost.core.protocol;

/**
 * {@code VhostUserInflight} of GET_INFLIGHT_FD and SET_INFLIGHT_FD, and of the GET_INFLIGHT_FD
 * reply: where the inflight region is in its fd, and for how many queues of what size. Decoding
 * accepts the 20 bytes of the struct with or without its 4 bytes of tail padding, at least one
 * queue, and a power-of-two queue size up to {@link #MAX_QUEUE_SIZE}; whether there are that many
 * queues is the backend's to check.
 */
public record InflightRequest(long mmapSize, long mmapOffset, int queues, int queueSize) {
    public static final int SIZE = 24, PACKED_SIZE = 20;
    /** The largest split ring virtio allows. */
    public static final int MAX_QUEUE_SIZE = 32768;

    /** GET_INFLIGHT_FD: the layout wanted, no fds. */
    public static InflightRequest decodeGet(byte[] payload, int fdCount) throws ProtocolException {
        InflightRequest r = decode(payload);
        if (fdCount != 0) {
            throw new ProtocolException(fdCount + " fds on GET_INFLIGHT_FD");
        }
        return r;
    }

    /** SET_INFLIGHT_FD: the layout of the region in the one fd that comes with it. */
    public static InflightRequest decodeSet(byte[] payload, int fdCount) throws ProtocolException {
        InflightRequest r = decode(payload);
        if (fdCount != 1) {
            throw new ProtocolException(fdCount + " fds on SET_INFLIGHT_FD");
        }
        return r;
    }

    private static InflightRequest decode(byte[] payload) throws ProtocolException {
        if (payload.length < PACKED_SIZE || payload.length > SIZE) {
            throw new ProtocolException("inflight payload of " + payload.length + " bytes");
        }
        int queues = Payload.u16(payload, 16), queueSize = Payload.u16(payload, 18);
        if (queues < 1 || queueSize < 1 || Integer.bitCount(queueSize) != 1 || queueSize > MAX_QUEUE_SIZE) {
            throw new ProtocolException("inflight for " + queues + " queues of " + queueSize);
        }
        return new InflightRequest(Payload.u64(payload, 0), Payload.u64(payload, 8), queues, queueSize);
    }

    public byte[] encode() {
        byte[] b = new byte[SIZE];
        Payload.putU64(b, 0, mmapSize);
        Payload.putU64(b, 8, mmapOffset);
        Payload.putU16(b, 16, queues);
        Payload.putU16(b, 18, queueSize);
        return b;
    }
}
