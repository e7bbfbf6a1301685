package io.jvhost.core.runtime;

import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Epoll;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.ring.VirtQueue;

import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.IntConsumer;

import org.jctools.queues.atomic.MpscAtomicArrayQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A duty-cycle loop that owns a set of virtqueues: it drains control commands, lets each running
 * queue's handler take a budget of chains, and when nothing is left either sleeps on the kick
 * eventfds ({@link IdleMode#EVENT}) or spins ({@link IdleMode#BUSY}).
 *
 * <p>Commands arrive through a JCTools MPSC queue ({@link #post}) from the control thread; results
 * go back through the control {@link Executor}. Only the poller thread touches its queues.
 */
public final class Poller implements Runnable, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Poller.class);
    private static final int BUDGET = 64, COMMAND_LIMIT = 64;
    private static final long WAKE = -1, DEVICE_WAKE = -2;
    /** Queues without a kick fd (NOFD) are polled this often while the poller sleeps. */
    private static final int NO_KICK_POLL_MILLIS = 1;

    private final String name;
    private final IdleMode mode;
    private final QueueHandler[] handlers;
    private final Executor control;
    private final MpscAtomicArrayQueue<PollerCommand> commands = new MpscAtomicArrayQueue<>(1024);
    private final Epoll epoll;
    private final Fd wakeFd;
    private final VirtQueue[] active;
    private final int[] kickFd;
    private final int[] wakeupFd;
    private final boolean[] handlerFailureLogged;
    private int activeCount;
    private int queuesWithoutKick;
    private volatile boolean running = true;
    private Thread thread;
    /** Exceptions that escaped a handler, a command or a duty cycle: each one is a bug. */
    private final AtomicLong failures = new AtomicLong();

    /** A unit of work the control thread hands to a poller. */
    @FunctionalInterface
    public interface PollerCommand {
        void execute(Poller poller);
    }

    public Poller(String name, IdleMode mode, QueueHandler[] handlers, Executor control) throws NativeException {
        this.name = name;
        this.mode = mode;
        this.handlers = handlers;
        this.control = control;
        this.epoll = new Epoll(64);
        this.wakeFd = EventFd.create();
        this.active = new VirtQueue[handlers.length];
        this.kickFd = new int[handlers.length];
        this.wakeupFd = new int[handlers.length];
        this.handlerFailureLogged = new boolean[handlers.length];
        java.util.Arrays.fill(kickFd, -1);
        java.util.Arrays.fill(wakeupFd, -1);
        LibC.check(epoll.add(wakeFd.get(), WAKE), "epoll_ctl");
    }

    public String name() {
        return name;
    }

    /**
     * How many exceptions escaped a queue handler, a command or a whole duty cycle (each was
     * caught, logged and survived). Guest or frontend input must never cause one; the fuzz tests
     * assert it stays 0. Any thread.
     */
    public long failures() {
        return failures.get();
    }

    /** Whether the poller's thread is running (it ends only at {@link #close()} or on an {@code Error}). Any thread. */
    public boolean isAlive() {
        Thread t = thread;
        return t != null && t.isAlive();
    }

    /** Starts the poller's thread. */
    public void start() {
        thread = Thread.ofPlatform().name(name).daemon(true).start(this);
    }

    /** Hands a command to the poller and wakes it. Any thread. */
    public void post(PollerCommand command) {
        while (!commands.offer(command)) {
            Thread.onSpinWait();
        }
        LibC.eventfdSignal(wakeFd.get());
    }

    /** Starts processing {@code queue} with {@code config}, then runs {@code ack} on the control thread. */
    public void attach(VirtQueue queue, QueueConfig config, Runnable ack) {
        post(p -> {
            p.doAttach(queue, config);
            control.execute(ack);
        });
    }

    /** Stops processing queue {@code index}; {@code ack} gets its last avail index on the control thread. */
    public void detach(int index, IntConsumer ack) {
        post(p -> {
            int lastAvail = p.doDetach(index);
            control.execute(() -> ack.accept(lastAvail));
        });
    }

    /** Changes the call eventfd of a running queue; after {@code ack} the old fd is no longer used. */
    public void setCallFd(VirtQueue queue, int fd, Runnable ack) {
        post(p -> {
            queue.callFd(fd);
            control.execute(ack);
        });
    }

    private void doAttach(VirtQueue q, QueueConfig c) {
        int base = c.base() == QueueConfig.KEEP_BASE ? q.lastAvailIdx() : c.base();
        q.inflight(c.inflight(), c.size());
        q.dirtyLog(c.log(), c.usedGpa());
        q.configure(c.size(), c.desc(), c.avail(), c.used(), c.memory(), base, c.eventIdx(), c.indirect(), c.errFd());
        q.callFd(c.callFd());
        if (q.baseCorrected() && c.callFd() >= 0) {
            LibC.eventfdSignal(c.callFd()); // the interrupt for those completions may have gone to a dead connection
        }
        q.pollerWakeFd(wakeFd.get());
        int i = q.index();
        if (active[i] == null) {
            activeCount++;
        }
        active[i] = q;
        kickFd[i] = c.kickFd();
        if (c.kickFd() < 0) {
            queuesWithoutKick++;
        } else if (mode == IdleMode.EVENT) {
            int r = epoll.add(c.kickFd(), i);
            if (r < 0) {
                LOG.warn("{}: cannot watch kick fd of queue {}: errno {}; polling it instead", name, i, -r);
                kickFd[i] = -1;
                queuesWithoutKick++;
            }
        }
        q.disableNotifications();
        safeCall(i, () -> handlers[i].started(q));
        int extra = handlers[i].wakeupFd();
        if (extra >= 0 && mode == IdleMode.EVENT && epoll.add(extra, DEVICE_WAKE, true) == 0) {
            wakeupFd[i] = extra;
        }
        LOG.debug("{}: attached {}", name, q);
    }

    private int doDetach(int i) {
        VirtQueue q = active[i];
        if (q == null) {
            return -1;
        }
        q.publish();
        safeCall(i, () -> handlers[i].stopped(q));
        q.publish();
        if (wakeupFd[i] >= 0) {
            epoll.remove(wakeupFd[i]);
            wakeupFd[i] = -1;
        }
        if (kickFd[i] >= 0) {
            if (mode == IdleMode.EVENT) {
                epoll.remove(kickFd[i]);
            }
        } else {
            queuesWithoutKick--;
        }
        kickFd[i] = -1;
        active[i] = null;
        activeCount--;
        LOG.debug("{}: detached {}", name, q);
        return q.lastAvailIdx();
    }

    private void safeCall(int queue, Runnable r) {
        try {
            r.run();
        } catch (RuntimeException e) {
            failures.incrementAndGet();
            LOG.error("{}: queue {} handler failed", name, queue, e);
        }
    }

    @Override
    public void run() {
        while (running) {
            try {
                if (doWork() == 0) {
                    idle();
                }
            } catch (RuntimeException e) {
                failures.incrementAndGet();
                LOG.error("{}: duty cycle failed; continuing", name, e);
            }
        }
    }

    /** One duty cycle: commands, then every running queue. Returns the work done. */
    int doWork() {
        int work = 0;
        for (PollerCommand c; work < COMMAND_LIMIT && (c = commands.poll()) != null; ) {
            c.execute(this);
            work++;
        }
        VirtQueue[] queues = active;
        for (int i = 0; i < queues.length; i++) {
            VirtQueue q = queues[i];
            if (q != null && !q.isBroken()) {
                work += process(i, q);
            }
        }
        return work;
    }

    private int process(int i, VirtQueue q) {
        try {
            return handlers[i].process(q, BUDGET);
        } catch (RuntimeException e) {
            q.counters().handlerExceptions++;
            failures.incrementAndGet();
            if (!handlerFailureLogged[i]) {
                handlerFailureLogged[i] = true;
                LOG.error("{}: queue {} handler threw (further failures only counted)", name, i, e);
            }
            q.publish();
            return 0;
        }
    }

    private void idle() {
        if (mode == IdleMode.BUSY) {
            Thread.onSpinWait();
            return;
        }
        VirtQueue[] queues = active;
        boolean more = false;
        for (VirtQueue q : queues) {
            if (q != null) {
                more |= q.enableNotifications();
            }
        }
        if (!more && commands.isEmpty()) {
            int n = epoll.await(queuesWithoutKick > 0 ? NO_KICK_POLL_MILLIS : 1000);
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
        for (VirtQueue q : queues) {
            if (q != null) {
                q.disableNotifications();
            }
        }
    }

    /**
     * Stops the thread after its current cycle, runs the commands it had not taken yet, and
     * releases its fds. Control thread.
     */
    @Override
    public void close() {
        running = false;
        LibC.eventfdSignal(wakeFd.get());
        if (thread != null) {
            try {
                thread.join(5000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        if (thread == null || !thread.isAlive()) {
            // The thread may have stopped with commands still queued, e.g. the detaches of a session
            // being shut down: run them here so those queues stop (devices finish what is in
            // flight) and the control thread gets their acks and releases the session's fds and memory.
            for (PollerCommand c; (c = commands.poll()) != null; ) {
                try {
                    c.execute(this);
                } catch (RuntimeException e) {
                    failures.incrementAndGet();
                    LOG.error("{}: command failed while closing", name, e);
                }
            }
        }
        epoll.close();
        wakeFd.close();
    }
}
