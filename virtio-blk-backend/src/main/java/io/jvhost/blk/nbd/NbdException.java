package io.jvhost.blk.nbd;

import java.io.IOException;

/**
 * An NBD server could not be reached or refused what was asked; the message is one line meant
 * for a person (the CLI prints it as it is).
 */
public final class NbdException extends IOException {
    public NbdException(String message) {
        super(message);
    }

    public NbdException(String message, Throwable cause) {
        super(message, cause);
    }
}
