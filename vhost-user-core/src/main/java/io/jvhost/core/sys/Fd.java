package io.jvhost.core.sys;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * Owns one file descriptor and closes it exactly once, whichever thread gets there first.
 * Fds received from a peer are wrapped at once so that every error path can close them.
 */
public final class Fd implements AutoCloseable {
    private final AtomicInteger fd;

    private Fd(int fd) {
        this.fd = new AtomicInteger(fd);
    }

    /** Takes ownership of {@code fd} (which must be open). */
    public static Fd adopt(int fd) {
        if (fd < 0) {
            throw new IllegalArgumentException("not an fd: " + fd);
        }
        return new Fd(fd);
    }

    /** The fd number, or -1 once closed. Any thread. */
    public int get() {
        return fd.get();
    }

    public boolean isOpen() {
        return fd.get() >= 0;
    }

    /** A new owner of a duplicate of this fd. */
    public Fd dup() throws NativeException {
        return adopt((int) LibC.check(LibC.dup(get()), "dup"));
    }

    /** Gives up ownership without closing and returns the number. */
    public int release() {
        return fd.getAndSet(-1);
    }

    @Override
    public void close() {
        int n = fd.getAndSet(-1);
        if (n >= 0) {
            LibC.close(n);
        }
    }

    /** Closes every non-null fd in the array. */
    public static void closeAll(Fd[] fds) {
        if (fds != null) {
            for (Fd f : fds) {
                if (f != null) {
                    f.close();
                }
            }
        }
    }

    @Override
    public String toString() {
        return "fd " + fd.get();
    }
}
