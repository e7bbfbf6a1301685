package io.jvhost.core.protocol;

/**
 * A message that breaks the protocol. The connection ends on a {@code fatal} one, and on any
 * refusal of a request that has a reply of its own ({@link MessageType#hasOwnReply}); otherwise the
 * request is refused (acked non-zero when the frontend asked for an ack) and the session goes on.
 */
public final class ProtocolException extends Exception {
    private final boolean fatal;

    public ProtocolException(String message, boolean fatal) {
        super(message);
        this.fatal = fatal;
    }

    /** A refusal that need not end the connection. */
    public ProtocolException(String message) {
        this(message, false);
    }

    public boolean fatal() {
        return fatal;
    }
}
