package io.jvhost.core.protocol;

/** A message that breaks the protocol; {@code fatal} ones end the connection. */
public final class ProtocolException extends Exception {
    private final boolean fatal;

    public ProtocolException(String message, boolean fatal) {
        super(message);
        this.fatal = fatal;
    }

    public boolean fatal() {
        return fatal;
    }
}
