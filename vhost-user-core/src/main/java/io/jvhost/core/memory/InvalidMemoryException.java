package io.jvhost.core.memory;

/** The frontend sent a memory region jvhost refuses to map. */
public final class InvalidMemoryException extends Exception {
    public InvalidMemoryException(String message) {
        super(message);
    }
}
