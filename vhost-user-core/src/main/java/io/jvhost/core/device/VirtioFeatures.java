package io.jvhost.core.device;

/**
 * Every virtio feature bit jvhost names (virtio 1.2 §6 and the device chapters), plus vhost's
 * LOG_ALL and vhost-user's PROTOCOL_FEATURES, in one place. Device-specific bits carry their
 * device's prefix: the same number means different things to different devices. The vhost-user
 * protocol's own bits are in {@link ProtocolFeatures}.
 */
public final class VirtioFeatures {
    // Device-independent (virtio 1.2 §6), and the transport's.
    public static final int NOTIFY_ON_EMPTY = 24;
    /** vhost: the backend logs its writes to guest memory (migration). */
    public static final int LOG_ALL = 26;
    public static final int ANY_LAYOUT = 27;
    public static final int RING_INDIRECT_DESC = 28;
    public static final int RING_EVENT_IDX = 29;
    /** vhost-user: the frontend may send GET/SET_PROTOCOL_FEATURES. */
    public static final int PROTOCOL_FEATURES = 30;
    public static final int VERSION_1 = 32;
    public static final int ACCESS_PLATFORM = 33;
    public static final int RING_PACKED = 34;
    public static final int IN_ORDER = 35;
    public static final int ORDER_PLATFORM = 36;
    public static final int SR_IOV = 37;
    public static final int NOTIFICATION_DATA = 38;
    public static final int NOTIF_CONFIG_DATA = 39;
    public static final int RING_RESET = 40;

    // virtio-net (§5.1.3).
    public static final int NET_CSUM = 0;
    public static final int NET_GUEST_CSUM = 1;
    public static final int NET_CTRL_GUEST_OFFLOADS = 2;
    public static final int NET_MTU = 3;
    public static final int NET_MAC = 5;
    public static final int NET_GUEST_TSO4 = 7;
    public static final int NET_GUEST_TSO6 = 8;
    public static final int NET_GUEST_ECN = 9;
    public static final int NET_GUEST_UFO = 10;
    public static final int NET_HOST_TSO4 = 11;
    public static final int NET_HOST_TSO6 = 12;
    public static final int NET_HOST_ECN = 13;
    public static final int NET_HOST_UFO = 14;
    public static final int NET_MRG_RXBUF = 15;
    public static final int NET_STATUS = 16;
    public static final int NET_CTRL_VQ = 17;
    public static final int NET_CTRL_RX = 18;
    public static final int NET_CTRL_VLAN = 19;
    public static final int NET_GUEST_ANNOUNCE = 21;
    public static final int NET_MQ = 22;
    public static final int NET_CTRL_MAC_ADDR = 23;
    public static final int NET_GUEST_USO4 = 54;
    public static final int NET_GUEST_USO6 = 55;
    public static final int NET_HOST_USO = 56;
    public static final int NET_HASH_REPORT = 57;
    public static final int NET_RSS = 60;

    // virtio-blk (§5.2.3).
    public static final int BLK_SIZE_MAX = 1;
    public static final int BLK_SEG_MAX = 2;
    public static final int BLK_GEOMETRY = 4;
    public static final int BLK_RO = 5;
    public static final int BLK_BLK_SIZE = 6;
    public static final int BLK_FLUSH = 9;
    public static final int BLK_TOPOLOGY = 10;
    public static final int BLK_CONFIG_WCE = 11;
    public static final int BLK_MQ = 12;
    public static final int BLK_DISCARD = 13;
    public static final int BLK_WRITE_ZEROES = 14;
    public static final int BLK_LIFETIME = 15;
    public static final int BLK_SECURE_ERASE = 16;

    private VirtioFeatures() {}

    public static long bit(int n) {
        return 1L << n;
    }

    public static boolean has(long features, int bit) {
        return (features & (1L << bit)) != 0;
    }
}
