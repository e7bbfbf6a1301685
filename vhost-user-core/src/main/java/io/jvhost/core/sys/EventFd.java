package io.jvhost.core.sys;

/** Eventfd helpers; the eventfd itself is an {@link Fd}. */
public final class EventFd {
    private EventFd() {}

    /** A new non-blocking, close-on-exec eventfd. Control path. */
    public static Fd create() throws NativeException {
        return Fd.adopt((int) LibC.check(LibC.eventfd(0, LibC.EFD_NONBLOCK | LibC.EFD_CLOEXEC), "eventfd"));
    }
}
