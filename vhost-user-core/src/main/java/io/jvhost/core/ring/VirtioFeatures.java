package io.jvhost.core.ring;

/** Feature bits of the virtio 1.2 spec and vhost that the framework itself implements or checks. */
public final class VirtioFeatures {
    public static final int NOTIFY_ON_EMPTY = 24;
    public static final int LOG_ALL = 26;
    public static final int RING_INDIRECT_DESC = 28;
    public static final int RING_EVENT_IDX = 29;
    /** vhost-user: the frontend may send GET/SET_PROTOCOL_FEATURES. */
    public static final int PROTOCOL_FEATURES = 30;
    public static final int VERSION_1 = 32;
    public static final int ACCESS_PLATFORM = 33;
    public static final int RING_PACKED = 34;

    private VirtioFeatures() {}

    public static long bit(int n) {
        return 1L << n;
    }

    public static boolean has(long features, int bit) {
        return (features & (1L << bit)) != 0;
    }
}
