package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;

/**
 * One epoll instance with a preallocated event array, used by a poller thread to sleep on its kick
 * eventfds. Registration is control-path; {@link #await} and the accessors belong to the owning thread.
 */
public final class Epoll implements AutoCloseable {
    /** x86-64 {@code struct epoll_event} is packed: u32 events then u64 data. */
    private static final long EVENT_SIZE = 12, DATA_OFFSET = 4;
    private static final int EPOLLET = LibC.EPOLLET;

    private final Arena arena = Arena.ofShared();
    private final Fd epfd;
    private final MemorySegment events;
    private final MemorySegment ctlEvent = arena.allocate(EVENT_SIZE, 8);
    private final int maxEvents;

    public Epoll(int maxEvents) throws NativeException {
        this.epfd = Fd.adopt((int) LibC.check(LibC.epollCreate(), "epoll_create1"));
        this.maxEvents = maxEvents;
        this.events = arena.allocate(EVENT_SIZE * maxEvents, 8);
    }

    /** Watches {@code fd} for input; {@code data} comes back with its events. Returns 0 or -errno. */
    public int add(int fd, long data) {
        return add(fd, data, false);
    }

    /** Like {@link #add(int, long)}; edge-triggered reports only new input, not input still unread. */
    public synchronized int add(int fd, long data, boolean edgeTriggered) {
        ctlEvent.set(JAVA_INT_UNALIGNED, 0, LibC.EPOLLIN | (edgeTriggered ? EPOLLET : 0));
        ctlEvent.set(JAVA_LONG_UNALIGNED, DATA_OFFSET, data);
        return LibC.epollCtl(epfd.get(), LibC.EPOLL_CTL_ADD, fd, ctlEvent);
    }

    /**
     * Watches {@code fd} for {@code events} ({@link LibC#EPOLLIN}, {@link LibC#EPOLLOUT},
     * {@link LibC#EPOLLET}, ...). Returns 0 or -errno.
     */
    public synchronized int add(int fd, long data, int events) {
        ctlEvent.set(JAVA_INT_UNALIGNED, 0, events);
        ctlEvent.set(JAVA_LONG_UNALIGNED, DATA_OFFSET, data);
        return LibC.epollCtl(epfd.get(), LibC.EPOLL_CTL_ADD, fd, ctlEvent);
    }

    /** Changes what {@code fd} is watched for. Returns 0 or -errno. Allocation-free. */
    public synchronized int modify(int fd, long data, int events) {
        ctlEvent.set(JAVA_INT_UNALIGNED, 0, events);
        ctlEvent.set(JAVA_LONG_UNALIGNED, DATA_OFFSET, data);
        return LibC.epollCtl(epfd.get(), LibC.EPOLL_CTL_MOD, fd, ctlEvent);
    }

    /**
     * The epoll fd itself: it is readable while any fd it watches is ready, so another epoll (a
     * poller's) can watch this whole set as one fd.
     */
    public int fd() {
        return epfd.get();
    }

    /** Stops watching {@code fd}. Returns 0 or -errno. */
    public int remove(int fd) {
        return LibC.epollCtl(epfd.get(), LibC.EPOLL_CTL_DEL, fd, MemorySegment.NULL);
    }

    /** Waits up to {@code timeoutMillis}; the number of ready fds, 0 on timeout, or -errno. */
    public int await(int timeoutMillis) {
        return LibC.epollWait(epfd.get(), events, maxEvents, timeoutMillis);
    }

    public long data(int i) {
        return events.get(JAVA_LONG_UNALIGNED, i * EVENT_SIZE + DATA_OFFSET);
    }

    public int mask(int i) {
        return events.get(JAVA_INT_UNALIGNED, i * EVENT_SIZE);
    }

    @Override
    public void close() {
        epfd.close();
        arena.close();
    }
}
