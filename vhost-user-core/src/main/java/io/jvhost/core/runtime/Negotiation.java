package io.jvhost.core.runtime;

import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.core.protocol.Message;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.protocol.ProtocolException;

/**
 * What one frontend and this backend agreed on: the virtio features, the protocol features and
 * the device status; and from them the reply policy (when a request gets a REPLY_ACK ack).
 * Control thread only.
 */
final class Negotiation {
    private final long offeredFeatures;
    private final long offeredProtocolFeatures;
    private long ackedFeatures;
    private long ackedProtocolFeatures;
    private int status;

    Negotiation(VirtioDevice device) {
        this.offeredFeatures = FeaturePolicy.features(device);
        this.offeredProtocolFeatures = FeaturePolicy.protocolFeatures(device);
    }

    long offeredFeatures() {
        return offeredFeatures;
    }

    long offeredProtocolFeatures() {
        return offeredProtocolFeatures;
    }

    long ackedProtocolFeatures() {
        return ackedProtocolFeatures;
    }

    long ackedFeatures() {
        return ackedFeatures;
    }

    /** SET_FEATURES: any subset of what was offered. */
    void ackFeatures(long features) throws ProtocolException {
        if ((features & ~offeredFeatures) != 0) {
            throw new ProtocolException(String.format("features 0x%x were not offered", features & ~offeredFeatures));
        }
        ackedFeatures = features;
    }

    /** SET_PROTOCOL_FEATURES: any subset of what was offered. */
    void ackProtocolFeatures(long features) throws ProtocolException {
        if ((features & ~offeredProtocolFeatures) != 0) {
            throw new ProtocolException(String.format("protocol features 0x%x not offered", features & ~offeredProtocolFeatures));
        }
        ackedProtocolFeatures = features;
    }

    /** Whether the virtio feature {@code bit} was acked. */
    boolean has(int bit) {
        return VirtioFeatures.has(ackedFeatures, bit);
    }

    /** Whether the protocol feature {@code bit} was acked. */
    boolean hasProtocol(int bit) {
        return (ackedProtocolFeatures & ProtocolFeatures.bit(bit)) != 0;
    }

    /** Whether the protocol feature {@code bit} is offered to this frontend. */
    boolean offersProtocol(int bit) {
        return (offeredProtocolFeatures & ProtocolFeatures.bit(bit)) != 0;
    }

    int status() {
        return status;
    }

    /** SET_STATUS: the device status byte. */
    void status(long status) throws ProtocolException {
        if (status < 0 || status > 0xFF) {
            throw new ProtocolException("status " + status + " is not a byte");
        }
        this.status = (int) status;
    }

    /** A device reset: features and status start over; protocol features stay (they belong to the connection). */
    void resetDevice() {
        ackedFeatures = 0;
        status = 0;
    }

    /**
     * The reply policy for a request without a reply of its own: acked (u64, 0 = done) only when
     * the frontend set NEED_REPLY and REPLY_ACK is negotiated (vhost-user spec, "REPLY_ACK"), as
     * things stand once the request was handled: a SET_PROTOCOL_FEATURES that turns REPLY_ACK on
     * is acked, one that turns it off is not (as rust-vmm's vhost does).
     */
    boolean acks(Message m) {
        return m.needsReply() && !MessageType.hasOwnReply(m.request()) && hasProtocol(ProtocolFeatures.REPLY_ACK);
    }
}
