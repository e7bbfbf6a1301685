package io.jvhost.cli;

/**
 * Something about the machine (a missing file, a directory without permission, a socket in use)
 * that stops a command: printed as one line, {@code jvhost CMD: MESSAGE}, exit code 1. The message
 * says what is wrong and what to do. Usage errors (a bad option) are picocli
 * {@code ParameterException}s instead, exit code 2.
 */
public final class Failure extends RuntimeException {
    public Failure(String message) {
        super(message);
    }

    public Failure(String message, Throwable cause) {
        super(message, cause);
    }
}
