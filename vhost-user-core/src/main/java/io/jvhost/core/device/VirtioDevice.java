package io.jvhost.core.device;

/**
 * A virtio device served over vhost-user. Implement this and {@link QueueHandler}; the framework
 * does the protocol, memory table, feature negotiation, rings, notifications and reconnects.
 *
 * <p>Unless a method says otherwise it is called on the control thread, never concurrently with
 * itself, and must not block.
 */
public interface VirtioDevice {
    /** The virtio device ID (virtio 1.2 §5): 1 net, 2 block, 4 entropy, ... */
    int deviceType();

    /** How many virtqueues the device has (what GET_QUEUE_NUM reports). */
    int queueCount();

    /** The largest queue size the device accepts (a power of two up to 32768). */
    default int maxQueueSize() {
        return 1024;
    }

    /**
     * Device feature bits to offer. The framework adds what it implements itself (VERSION_1,
     * RING_EVENT_IDX, RING_INDIRECT_DESC, RING_PACKED, IN_ORDER, LOG_ALL and vhost-user's
     * PROTOCOL_FEATURES): {@code runtime.FeaturePolicy}.
     */
    long features();

    /**
     * Framework ring features this device does not want offered, as {@link VirtioFeatures#bit}s:
     * RING_PACKED, IN_ORDER, RING_EVENT_IDX, RING_INDIRECT_DESC or LOG_ALL. By default none: every
     * device runs on either ring layout without knowing which. IN_ORDER is always correct (the queue
     * holds back a completion until those taken before it are done) but a device that completes
     * requests out of order, say from I/O threads, may refuse it so that a slow request does not
     * hold back quick ones.
     */
    default long refusedFeatures() {
        return 0;
    }

    /** Called once, before any frontend connects, with what the framework offers the device. */
    default void bind(DeviceContext context) {}

    /** The features the driver accepted (SET_FEATURES), device and framework bits alike. */
    default void featuresAcked(long features) {}

    /** Extra vhost-user protocol features the device implements (e.g. MTU, RARP). */
    default long protocolFeatures() {
        return 0;
    }

    /** The device-specific configuration space (virtio 1.2 §4.1.4.6), read on GET_CONFIG. */
    default byte[] config() {
        return new byte[0];
    }

    /** A driver write to the configuration space; false refuses it. */
    default boolean writeConfig(int offset, byte[] data) {
        return false;
    }

    /** Back to the initial state: the frontend went away, or reset the device. */
    default void reset() {}

    /** NET_SET_MTU; false refuses it. */
    default boolean setMtu(int mtu) {
        return false;
    }

    /** SEND_RARP for the guest MAC (in the low 48 bits) after a migration; false refuses it. */
    default boolean sendRarp(long mac) {
        return false;
    }

    /**
     * Which queues share a poller thread: one array of queue indices per poller. By default all
     * queues share one poller; a user may override the map when starting the backend.
     */
    default int[][] queueSets() {
        int[] all = new int[queueCount()];
        for (int i = 0; i < all.length; i++) {
            all[i] = i;
        }
        return new int[][] {all};
    }

    /** The handler for queue {@code index}; asked once per queue when the backend starts. */
    QueueHandler handler(int index);
}
