package io.jvhost.core.runtime;

import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.device.VirtioFeatures;

import static io.jvhost.core.device.ProtocolFeatures.bit;

/**
 * What the framework offers a frontend for every device, on top of what the device offers
 * ({@link VirtioDevice#features()}, {@link VirtioDevice#protocolFeatures()}), and what it never
 * offers. The bit names are in {@link VirtioFeatures} and {@link ProtocolFeatures}.
 */
public final class FeaturePolicy {
    /**
     * Virtio features the framework implements for every device: both ring layouts (split and
     * RING_PACKED), IN_ORDER (the queue keeps completions in order whatever the device does),
     * notifications, migration.
     */
    public static final long FRAMEWORK_FEATURES = VirtioFeatures.bit(VirtioFeatures.VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.RING_EVENT_IDX) | VirtioFeatures.bit(VirtioFeatures.RING_INDIRECT_DESC)
            | VirtioFeatures.bit(VirtioFeatures.RING_PACKED) | VirtioFeatures.bit(VirtioFeatures.IN_ORDER)
            | VirtioFeatures.bit(VirtioFeatures.PROTOCOL_FEATURES) | VirtioFeatures.bit(VirtioFeatures.LOG_ALL);

    /** Framework features a device may refuse ({@link VirtioDevice#refusedFeatures()}): the ring's options. */
    public static final long REFUSABLE_FEATURES = VirtioFeatures.bit(VirtioFeatures.RING_EVENT_IDX)
            | VirtioFeatures.bit(VirtioFeatures.RING_INDIRECT_DESC) | VirtioFeatures.bit(VirtioFeatures.RING_PACKED)
            | VirtioFeatures.bit(VirtioFeatures.IN_ORDER) | VirtioFeatures.bit(VirtioFeatures.LOG_ALL);

    /** Protocol features every jvhost backend offers; devices add their own (MTU, RARP, INFLIGHT_SHMFD, ...). */
    public static final long PROTOCOL_FEATURES = bit(ProtocolFeatures.MQ) | bit(ProtocolFeatures.REPLY_ACK)
            | bit(ProtocolFeatures.CONFIG) | bit(ProtocolFeatures.BACKEND_REQ) | bit(ProtocolFeatures.CONFIGURE_MEM_SLOTS)
            | bit(ProtocolFeatures.STATUS) | bit(ProtocolFeatures.LOG_SHMFD);

    /** Never offered, whatever the device asks: in-band notifications would put kicks on the control socket. */
    public static final long NEVER_PROTOCOL_FEATURES = bit(ProtocolFeatures.INBAND_NOTIFICATIONS);

    private FeaturePolicy() {}

    /** The virtio features offered for {@code device}: its own and the framework's, less those it refuses. */
    public static long features(VirtioDevice device) {
        return (device.features() | FRAMEWORK_FEATURES) & ~(device.refusedFeatures() & REFUSABLE_FEATURES);
    }

    /** The protocol features offered for {@code device}. */
    public static long protocolFeatures(VirtioDevice device) {
        return (PROTOCOL_FEATURES | device.protocolFeatures()) & ~NEVER_PROTOCOL_FEATURES;
    }
}
