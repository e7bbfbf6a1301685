package io.jvhost.core.runtime;

import io.jvhost.core.protocol.BackendMessageType;
import io.jvhost.core.protocol.Header;
import io.jvhost.core.protocol.Payload;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.MessageIo;

import java.lang.foreign.MemorySegment;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The backend-initiated channel (SET_BACKEND_REQ_FD): requests from this backend to the frontend,
 * written through one message writer kept for the whole session. Requests go without NEED_REPLY:
 * jvhost never waits on this channel while the frontend may be waiting on the main one.
 *
 * <p>Control thread only.
 */
final class BackendChannel implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(BackendChannel.class);
    /** The largest payload a backend request of ours carries (VRING_HOST_NOTIFIER_MSG: 24 bytes). */
    private static final int MAX_PAYLOAD = 64;

    private final String name;
    private Fd socket;
    /** Made with the first channel, reused for every request until the session ends. */
    private MessageIo writer;

    BackendChannel(String name) {
        this.name = name;
    }

    /** Whether the frontend gave a channel. */
    boolean isOpen() {
        return socket != null;
    }

    /** Uses {@code socket} from now on; returns the channel it replaces (null if none), for the caller to close. */
    Fd replace(Fd socket) {
        Fd old = this.socket;
        this.socket = socket;
        if (writer == null) {
            writer = new MessageIo(Header.SIZE + MAX_PAYLOAD);
        }
        return old;
    }

    /** A duplicate of the channel's socket for a successor process (live upgrade), or null without one. */
    Fd dupSocket() throws io.jvhost.core.sys.NativeException {
        return socket == null ? null : socket.dup();
    }

    /** CONFIG_CHANGE_MSG: the device's configuration space changed. Needs {@link #isOpen()}. */
    void sendConfigChange() {
        long n = send(BackendMessageType.CONFIG_CHANGE_MSG, Payload.NONE);
        if (n != Header.SIZE) {
            LOG.warn("{}: CONFIG_CHANGE_MSG not sent: {}", name, n);
        } else {
            LOG.info("{}: sent CONFIG_CHANGE_MSG", name);
        }
    }

    /** Writes one request; returns the bytes sent or {@code -errno}. */
    private long send(int request, byte[] payload) {
        MemorySegment tx = writer.txBuffer();
        Header.encode(tx, request, Header.VERSION, payload.length);
        MemorySegment.copy(MemorySegment.ofArray(payload), 0, tx, Header.SIZE, payload.length);
        return writer.send(socket.get(), Header.SIZE + payload.length, null);
    }

    @Override
    public void close() {
        if (socket != null) {
            socket.close();
            socket = null;
        }
        if (writer != null) {
            writer.close();
            writer = null;
        }
    }
}
