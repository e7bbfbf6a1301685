package io.jvhost.testkit.guest;

/**
 * A guest did not do what was asked in time, or QEMU failed or exited. The message carries the
 * tail of the console so a test report shows what the guest was doing.
 */
public final class GuestException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    public GuestException(String message) {
        super(message);
    }

    public GuestException(String message, Throwable cause) {
        super(message, cause);
    }
}
