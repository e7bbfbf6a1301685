package io.jvhost.core.runtime;

import io.jvhost.core.protocol.Header;
import io.jvhost.core.protocol.Message;
import io.jvhost.core.protocol.Payload;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.NativeException;

import java.util.ArrayList;
import java.util.List;

import static io.jvhost.core.protocol.MessageType.*;

/**
 * A session described as the vhost-user messages that rebuild it in a successor process (live
 * upgrade): what was negotiated, the shared regions and the backend channel with duplicates of
 * their fds, the device's config writes and MTU, and each vring where it stopped. The successor's
 * session handles them as if the frontend had sent them, so a rebuilt session passes every check a
 * live one does. Records, as the session handles them, what no other part keeps. Control thread only.
 */
final class SessionImage {
    /** A guest rewrites the same few config fields; the first ones say it. */
    private static final int MAX_CONFIG_WRITES = 64;

    private final List<Message> configWrites = new ArrayList<>();
    private Message mtu;
    private boolean featuresSet, protocolFeaturesSet;

    static Message message(int request, byte[] payload) {
        return new Message(request, Header.VERSION, payload, new Fd[0]);
    }

    void featuresSet() {
        featuresSet = true;
    }

    void protocolFeaturesSet() {
        protocolFeaturesSet = true;
    }

    /** A SET_CONFIG the device took. */
    void configWritten(byte[] payload) {
        if (configWrites.size() < MAX_CONFIG_WRITES) {
            configWrites.add(message(SET_CONFIG, payload));
        }
    }

    /** A NET_SET_MTU the device took. */
    void mtuSet(byte[] payload) {
        mtu = message(NET_SET_MTU, payload);
    }

    /** RESET_OWNER / RESET_DEVICE: features and config writes start over (protocol features stay). */
    void deviceReset() {
        featuresSet = false;
        configWrites.clear();
    }

    /** The messages, in the order a frontend could have sent them; on failure no fd is left open. */
    List<Message> messages(Negotiation negotiation, SharedRegions regions, BackendChannel channel, Vrings vrings) throws NativeException {
        List<Message> out = new ArrayList<>();
        try {
            if (protocolFeaturesSet) {
                out.add(message(SET_PROTOCOL_FEATURES, Payload.encodeU64(negotiation.ackedProtocolFeatures())));
            }
            if (featuresSet) {
                out.add(message(SET_FEATURES, Payload.encodeU64(negotiation.ackedFeatures())));
            }
            out.add(message(SET_STATUS, Payload.encodeU64(negotiation.status())));
            regions.handoverMessages(out);
            Fd backendChannel = channel.dupSocket();
            if (backendChannel != null) {
                out.add(new Message(SET_BACKEND_REQ_FD, Header.VERSION, Payload.NONE, new Fd[] {backendChannel}));
            }
            out.addAll(configWrites);
            if (mtu != null) {
                out.add(mtu);
            }
            vrings.handoverMessages(out);
            return out;
        } catch (NativeException e) {
            out.forEach(m -> Fd.closeAll(m.fds()));
            throw e;
        }
    }
}
