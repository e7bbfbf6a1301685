package io.jvhost.core.sys;

import java.io.IOException;

/** A failed system call on the control path, with its errno. */
public final class NativeException extends IOException {
    private final int errno;

    public NativeException(String what, int errno) {
        super(what + " failed: " + Errno.name(errno) + " (" + errno + ")");
        this.errno = errno;
    }

    public int errno() {
        return errno;
    }
}
