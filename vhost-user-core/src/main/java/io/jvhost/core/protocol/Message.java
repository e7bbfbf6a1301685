package io.jvhost.core.protocol;

import io.jvhost.core.sys.Fd;

/**
 * One framed vhost-user request: the header's request code and flags, the payload bytes and the
 * fds that came with them. Whoever consumes a message owns its fds and closes what it does not
 * keep. A plain carrier: the records of this package decode its payload.
 */
public record Message(int request, int flags, byte[] payload, Fd[] fds) {
    public boolean needsReply() {
        return (flags & Header.NEED_REPLY) != 0;
    }

    public int size() {
        return payload.length;
    }

    public int fdCount() {
        return fds.length;
    }

    public String name() {
        return MessageType.name(request);
    }

    /** Takes fd {@code i} out of the message: the caller owns it now, and the message no longer closes it. */
    public Fd take(int i) {
        Fd fd = fds[i];
        fds[i] = null;
        return fd;
    }
}
