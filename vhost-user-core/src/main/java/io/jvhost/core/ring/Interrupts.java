package io.jvhost.core.ring;

import io.jvhost.core.sys.LibC;

/**
 * Which interrupts (calls) a {@link VirtQueue} sends its driver, and when. Without coalescing, a
 * publish the driver wants to hear of (EVENT_IDX used_event, else the NO_INTERRUPT flag) signals the
 * call eventfd at once. With coalescing ({@code ethtool -C rx-frames/rx-usecs}) the call is held back
 * until {@code frames} used entries have gathered or {@code usecs} passed since the first of them;
 * the driver's wish is remembered across publishes (EVENT_IDX looks only at what one publish moved),
 * and the poller sends what is owed before it sleeps, so the last interrupt of a burst is never late
 * by more than that. Kept apart from the queue so the ring side of publish reads alone. Poller
 * thread, but the call fd, which any thread may set; allocation-free.
 */
public final class Interrupts {
    private final QueueCounters counters;
    private volatile int callFd = -1;
    /** Off when 0. */
    private int frames;
    private long nanos;
    /** Entries published since the last call, when the first of them was, and whether a call is owed. */
    private int pendingEntries;
    private long pendingSince;
    private boolean owed;

    Interrupts(QueueCounters counters) {
        this.counters = counters;
    }

    /** The eventfd that interrupts the driver; -1 for none. Any thread. */
    void callFd(int fd) {
        this.callFd = fd;
    }

    /** Sets the limits (0 frames: off) and forgets what was owed. Control thread while detached; or a test. */
    public void coalesce(int frames, long usecs) {
        if (frames < 0 || usecs < 0) {
            throw new IllegalArgumentException("coalescing needs frames and usecs >= 0: " + frames + ", " + usecs);
        }
        this.frames = frames;
        this.nanos = usecs * 1000;
        this.pendingEntries = 0;
        this.owed = false;
    }

    /**
     * {@code published} entries went out and the driver wanted an interrupt for them or not
     * ({@code notify}): calls now, or holds the call back, or counts it suppressed.
     */
    void published(int published, boolean notify) {
        if (frames == 0) {
            int fd = callFd;
            if (notify && fd >= 0) {
                LibC.eventfdSignal(fd);
                counters.notificationsSent++;
            } else {
                counters.notificationsSuppressed++;
            }
            return;
        }
        owed |= notify;
        if (!owed) {
            counters.notificationsSuppressed++;
            return;
        }
        long now = System.nanoTime();
        if (pendingEntries == 0) {
            pendingSince = now;
        }
        pendingEntries += published;
        if (pendingEntries < frames && now - pendingSince < nanos) {
            counters.notificationsCoalesced++;
            return;
        }
        call();
    }

    /** Sends a held-back call: always when {@code due} is false, else once its time has come. */
    public void flush(boolean due) {
        if (owed && (!due || System.nanoTime() - pendingSince >= nanos)) {
            call();
        }
    }

    private void call() {
        int fd = callFd;
        if (fd >= 0) {
            LibC.eventfdSignal(fd);
            counters.notificationsSent++;
        }
        pendingEntries = 0;
        owed = false;
    }
}
