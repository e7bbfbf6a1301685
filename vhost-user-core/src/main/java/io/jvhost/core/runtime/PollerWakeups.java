package io.jvhost.core.runtime;

import io.jvhost.core.ring.VirtQueue;
import io.jvhost.core.sys.Epoll;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;

import org.jctools.queues.atomic.MpscAtomicArrayQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * How a {@link Poller} with nothing to do goes to sleep ({@link #sleep}: owed calls sent, the
 * drivers asked to kick, the rings checked once more) and what wakes it, per slot: its own wake
 * eventfd (commands, completions from other threads), each queue's kick eventfd and each handler's
 * wakeup fd (a TAP device, a store's completion eventfd), all in one epoll set. A fd that cannot be
 * watched (a queue without a kick fd, NOFD, or an epoll failure) is polled instead: while any is,
 * the poller sleeps at most {@link #NO_KICK_POLL_MILLIS}. Kept apart from the poller so the fd
 * bookkeeping of attach and detach, and the order of going to sleep, are each in one place.
 * Constructed on the control thread; poller thread afterwards.
 */
final class PollerWakeups implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(PollerWakeups.class);
    private static final long WAKE = -1, DEVICE_WAKE = -2;
    /** Queues without a kick fd (NOFD), and stopping queues, are polled this often while the poller sleeps. */
    static final int NO_KICK_POLL_MILLIS = 1;

    private final String name;
    private final IdleMode mode;
    private final Epoll epoll;
    private final Fd wakeFd;
    private final int[] kickFd;
    private final int[] wakeupFd;
    /** Per slot: its handler's wakeup fd could not be watched, so the poller polls it (counted in polled). */
    private final boolean[] wakeupPolled;
    /** Slots whose kick or wakeup fd is polled rather than watched. */
    private int polled;

    PollerWakeups(String name, IdleMode mode, int slots) throws NativeException {
        this.name = name;
        this.mode = mode;
        this.epoll = new Epoll(64);
        this.wakeFd = EventFd.create();
        this.kickFd = new int[slots];
        this.wakeupFd = new int[slots];
        this.wakeupPolled = new boolean[slots];
        java.util.Arrays.fill(kickFd, -1);
        java.util.Arrays.fill(wakeupFd, -1);
        LibC.check(epoll.add(wakeFd.get(), WAKE), "epoll_ctl");
    }

    /** The poller's own eventfd: signalling it ends the poller's sleep. */
    int wakeFd() {
        return wakeFd.get();
    }

    /** Wakes the poller. Any thread. */
    void wake() {
        LibC.eventfdSignal(wakeFd.get());
    }

    /** Watches the kick eventfd {@code fd} of the queue in {@code slot} (-1: none, polled); not for a BUSY poller. */
    void watchKick(int slot, int fd) {
        kickFd[slot] = fd;
        if (fd < 0) {
            polled++;
        } else if (mode != IdleMode.BUSY) { // a spinning poller never sleeps: it needs no kicks
            int r = epoll.add(fd, slot);
            if (r < 0) {
                LOG.warn("{}: cannot watch kick fd of queue {}: errno {}; polling it instead", name, slot, -r);
                kickFd[slot] = -1;
                polled++;
            }
        }
    }

    /**
     * Watches the handler's own fd (new input wakes the poller; the handler reads it in process).
     * One that cannot be watched is polled like a queue without a kick fd instead, so its input
     * waits at most NO_KICK_POLL_MILLIS rather than until some other wakeup. Not for a BUSY poller.
     */
    void watchWakeup(int slot, int fd) {
        if (fd >= 0 && mode != IdleMode.BUSY) {
            int r = epoll.add(fd, DEVICE_WAKE, true);
            if (r == 0) {
                wakeupFd[slot] = fd;
            } else {
                LOG.warn("{}: cannot watch the wakeup fd of queue {}: errno {}; polling it instead", name, slot, -r);
                wakeupPolled[slot] = true;
                polled++;
            }
        }
    }

    /** Stops watching (or polling) every fd of {@code slot}. */
    void unwatch(int slot) {
        if (wakeupFd[slot] >= 0) {
            epoll.remove(wakeupFd[slot]);
            wakeupFd[slot] = -1;
        }
        if (wakeupPolled[slot]) {
            wakeupPolled[slot] = false;
            polled--;
        }
        if (kickFd[slot] >= 0) {
            if (mode != IdleMode.BUSY) {
                epoll.remove(kickFd[slot]);
            }
        } else {
            polled--;
        }
        kickFd[slot] = -1;
    }

    /**
     * The poller found nothing to do and is done spinning: sends every call still owed, asks the
     * drivers of {@code active} to kick again and, unless that found work or a command is waiting in
     * {@code commands}, sleeps ({@link #await}; {@code pollAnyway} while a queue is stopping); then
     * asks the drivers not to kick again. Allocation-free.
     */
    void sleep(VirtQueue[] active, MpscAtomicArrayQueue<?> commands, boolean pollAnyway) {
        boolean more = false;
        for (VirtQueue q : active) {
            if (q != null) {
                q.interrupts().flush(false); // about to sleep: nothing owed may wait for the next kick
                more |= q.enableNotifications();
            }
        }
        if (!more && commands.isEmpty()) {
            await(pollAnyway, active);
        }
        for (VirtQueue q : active) {
            if (q != null) {
                q.disableNotifications();
            }
        }
    }

    /**
     * Sleeps until a watched fd fires, at most {@link #NO_KICK_POLL_MILLIS} when something must be
     * polled (or {@code pollAnyway}), else a second; drains what fired and tells each kicked queue of
     * {@code active}. Allocation-free.
     */
    private void await(boolean pollAnyway, VirtQueue[] active) {
        int n = epoll.await(polled > 0 || pollAnyway ? NO_KICK_POLL_MILLIS : 1000);
        for (int e = 0; e < n; e++) {
            long data = epoll.data(e);
            if (data == WAKE) {
                LibC.eventfdDrain(wakeFd.get());
            } else if (data == DEVICE_WAKE) {
                // the handler reads its own fd in process()
            } else {
                int i = (int) data;
                if (kickFd[i] >= 0 && LibC.eventfdDrain(kickFd[i]) > 0 && active[i] != null) {
                    active[i].kicked();
                }
            }
        }
    }

    @Override
    public void close() {
        epoll.close();
        wakeFd.close();
    }
}
