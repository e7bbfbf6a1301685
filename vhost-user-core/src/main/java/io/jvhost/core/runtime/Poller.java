package io.jvhost.core.runtime;

import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Epoll;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.CpuAffinity;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.ring.VirtQueue;

import java.util.ArrayDeque;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;
import java.util.function.LongConsumer;

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
 *
 * <p>Stopping a queue does not hold up the others: a queue whose handler still has requests in
 * flight ({@link QueueHandler#drain}) stops taking chains at once, is drained on every duty cycle
 * while the poller goes on serving its other queues, and is acknowledged (its last avail index to
 * the control thread) when nothing is left in flight or {@link #STOP_TIMEOUT_NANOS} passed.
 * Commands for a queue that is stopping wait until it has stopped.
 *
 * <p>A poller's queues sit in slots. A backend's own poller has a slot per queue of that backend
 * (slot = queue index); a shared poller ({@link #Poller(String, IdleMode, int)}) serves
 * queues of several backends, each {@linkplain #register registered} in a slot of its own.
 */
public final class Poller implements Runnable, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Poller.class);
    private static final int BUDGET = 64, COMMAND_LIMIT = 64;
    private static final long WAKE = -1, DEVICE_WAKE = -2;
    /** Queues without a kick fd (NOFD), and stopping queues, are polled this often while the poller sleeps. */
    private static final int NO_KICK_POLL_MILLIS = 1;
    /** ADAPTIVE: spin this long after the last work, then yield until YIELD_UNTIL, then sleep. */
    static final long SPIN_NANOS = Long.getLong("jvhost.idle.spin-nanos", 20_000),
            YIELD_UNTIL_NANOS = Long.getLong("jvhost.idle.yield-until-nanos", 100_000);
    /** Pinned pollers' CPUs and thread ids, process-wide: the other threads are kept off those CPUs. */
    private static final java.util.BitSet PINNED_CPUS = new java.util.BitSet();
    private static final java.util.Set<Integer> PINNED_THREADS = java.util.concurrent.ConcurrentHashMap.newKeySet();
    /** How long a stopping queue may wait for its requests in flight before it is detached without them. */
    static final long STOP_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(30);

    private final String name;
    private final IdleMode mode;
    /** The CPU this poller runs on, or -1: any. */
    private final int cpu;
    /** ADAPTIVE: when this poller last found nothing to do after work (0 while working). */
    private long idleSince;
    private final QueueHandler[] handlers;
    /** Shared pollers: which slots are taken (guarded by {@code this}); null for a backend's own poller. */
    private final boolean[] taken;
    /** Per slot: exceptions that escaped that slot's handler (what a shared poller's backends count as theirs). */
    private final AtomicLongArray slotFailures;
    /** Per slot: the control thread of the queue's backend, where its acknowledgements run. */
    private final Executor[] controlOf;
    private final MpscAtomicArrayQueue<PollerCommand> commands = new MpscAtomicArrayQueue<>(1024);
    private final Epoll epoll;
    private final Fd wakeFd;
    private final VirtQueue[] active;
    private final int[] kickFd;
    private final int[] wakeupFd;
    /** Per queue: its handler's wakeup fd could not be watched, so the poller polls it (counted in queuesWithoutKick). */
    private final boolean[] wakeupPolled;
    private final boolean[] handlerFailureLogged;
    // Queues stopping while requests are in flight: the queue, who gets its base, until when it may wait.
    private final VirtQueue[] stopping;
    private final LongConsumer[] stopAcks;
    private final long[] stopDeadlines;
    /** Per queue: attach and detach commands that came while it was stopping, run once it has stopped. */
    private final ArrayDeque<Runnable>[] afterStop;
    private int stoppingCount;
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

    /** A backend's own poller: slot i is queue i of {@code handlers}. */
    public Poller(String name, IdleMode mode, QueueHandler[] handlers, Executor control) throws NativeException {
        this(name, mode, handlers, null, control, -1);
    }

    /** @param cpu the CPU the poller's thread runs on (the JVM's other threads kept off it), -1 for any */
    public Poller(String name, IdleMode mode, QueueHandler[] handlers, Executor control, int cpu) throws NativeException {
        this(name, mode, handlers, null, control, cpu);
    }

    /**
     * A shared poller with room for {@code slots} queues of any backends, {@linkplain #register
     * registered} before they are attached.
     *
     * @param cpu as for a backend's own poller
     */
    public Poller(String name, IdleMode mode, int slots, int cpu) throws NativeException {
        this(name, mode, new QueueHandler[slots], new boolean[slots], Runnable::run, cpu); // each slot gets its backend's at register
    }

    private Poller(String name, IdleMode mode, QueueHandler[] handlers, boolean[] taken, Executor control, int cpu)
            throws NativeException {
        this.name = name;
        this.mode = mode;
        this.cpu = cpu;
        this.handlers = handlers;
        this.taken = taken;
        this.slotFailures = new AtomicLongArray(handlers.length);
        this.controlOf = new Executor[handlers.length];
        java.util.Arrays.fill(controlOf, control);
        this.epoll = new Epoll(64);
        this.wakeFd = EventFd.create();
        this.active = new VirtQueue[handlers.length];
        this.kickFd = new int[handlers.length];
        this.wakeupFd = new int[handlers.length];
        this.wakeupPolled = new boolean[handlers.length];
        this.handlerFailureLogged = new boolean[handlers.length];
        this.stopping = new VirtQueue[handlers.length];
        this.stopAcks = new LongConsumer[handlers.length];
        this.stopDeadlines = new long[handlers.length];
        @SuppressWarnings("unchecked")
        ArrayDeque<Runnable>[] waiting = new ArrayDeque[handlers.length];
        this.afterStop = waiting;
        java.util.Arrays.fill(kickFd, -1);
        java.util.Arrays.fill(wakeupFd, -1);
        LibC.check(epoll.add(wakeFd.get(), WAKE), "epoll_ctl");
    }

    public String name() {
        return name;
    }

    /** Whether this poller serves queues of several backends ({@link #register}). */
    public boolean shared() {
        return taken != null;
    }

    /**
     * Shared pollers: takes a free slot for a queue whose handler is {@code handler}; the queue is
     * attached and detached by that slot, and its acknowledgements run on {@code control} (its
     * backend's control thread). Any thread, before the queue's first attach.
     *
     * @throws IllegalStateException if every slot is taken
     */
    public synchronized int register(QueueHandler handler, Executor control) {
        for (int slot = 0; slot < taken.length; slot++) {
            if (!taken[slot]) {
                taken[slot] = true;
                handlers[slot] = handler; // published to the poller thread by the attach command
                controlOf[slot] = control;
                return slot;
            }
        }
        throw new IllegalStateException("poller " + name + " is full: " + taken.length + " queues");
    }

    /**
     * Shared pollers: frees {@code slot} once its queue has stopped (after its last detach); the
     * future completes then. Any thread.
     */
    public java.util.concurrent.CompletableFuture<Void> unregister(int slot) {
        java.util.concurrent.CompletableFuture<Void> freed = new java.util.concurrent.CompletableFuture<>();
        post(p -> p.whenStopped(slot, () -> {
            synchronized (this) {
                handlers[slot] = null;
                taken[slot] = false;
            }
            freed.complete(null);
        }));
        return freed;
    }

    /** Exceptions that escaped the handler in {@code slot} (counted in {@link #failures()} too). Any thread. */
    public long failures(int slot) {
        return slotFailures.get(slot);
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

    /**
     * Starts processing {@code queue} in {@code slot} with {@code config} (once it has stopped, if it
     * is stopping), then runs {@code ack} on the control thread.
     */
    public void attach(int slot, VirtQueue queue, QueueConfig config, Runnable ack) {
        post(p -> p.whenStopped(slot, () -> {
            p.doAttach(slot, queue, config);
            controlOf[slot].execute(ack);
        }));
    }

    /**
     * Stops processing the queue in {@code slot}; once its handler has nothing left in flight (or
     * {@link #STOP_TIMEOUT_NANOS} passed), {@code ack} gets its base ({@link VirtQueue#base()}, what
     * GET_VRING_BASE answers) on the control thread, -1 if it was not running. The poller serves its
     * other queues meanwhile.
     */
    public void detach(int slot, LongConsumer ack) {
        post(p -> p.whenStopped(slot, () -> p.beginDetach(slot, ack)));
    }

    /** Changes the call eventfd of the running queue in {@code slot}; after {@code ack} the old fd is no longer used. */
    public void setCallFd(int slot, VirtQueue queue, int fd, Runnable ack) {
        post(p -> {
            queue.callFd(fd);
            controlOf[slot].execute(ack);
        });
    }

    private void doAttach(int i, VirtQueue q, QueueConfig c) {
        c.configure(q);
        q.callFd(c.callFd());
        if (q.baseCorrected() && c.callFd() >= 0) {
            LibC.eventfdSignal(c.callFd()); // the interrupt for those completions may have gone to a dead connection
        }
        q.pollerWakeFd(wakeFd.get());
        if (active[i] == null) {
            activeCount++;
        }
        active[i] = q;
        kickFd[i] = c.kickFd();
        if (c.kickFd() < 0) {
            queuesWithoutKick++;
        } else if (mode != IdleMode.BUSY) { // a spinning poller never sleeps: it needs no kicks
            int r = epoll.add(c.kickFd(), i);
            if (r < 0) {
                LOG.warn("{}: cannot watch kick fd of queue {}: errno {}; polling it instead", name, i, -r);
                kickFd[i] = -1;
                queuesWithoutKick++;
            }
        }
        q.disableNotifications();
        safeCall(i, () -> handlers[i].started(q));
        // The handler's own fd (a TAP device, a store's completion eventfd): new input wakes the
        // poller. One that cannot be watched is polled like a queue without a kick fd instead, so
        // its input waits at most NO_KICK_POLL_MILLIS rather than until some other wakeup.
        int extra = handlers[i].wakeupFd();
        if (extra >= 0 && mode != IdleMode.BUSY) {
            int r = epoll.add(extra, DEVICE_WAKE, true);
            if (r == 0) {
                wakeupFd[i] = extra;
            } else {
                LOG.warn("{}: cannot watch the wakeup fd of queue {}: errno {}; polling it instead", name, i, -r);
                wakeupPolled[i] = true;
                queuesWithoutKick++;
            }
        }
        LOG.debug("{}: attached {}", name, q);
    }

    /** Runs {@code command} for queue {@code i} now, or after the queue has stopped if it is stopping. */
    private void whenStopped(int i, Runnable command) {
        if (stopping[i] == null) {
            command.run();
        } else {
            if (afterStop[i] == null) {
                afterStop[i] = new ArrayDeque<>();
            }
            afterStop[i].add(command);
        }
    }

    /**
     * Takes queue {@code i} off the running set at once (no more chains, kicks or device wakeups),
     * then lets its handler finish what is in flight; {@link #finishStops} acks it.
     */
    private void beginDetach(int i, LongConsumer ack) {
        VirtQueue q = active[i];
        if (q == null) {
            controlOf[i].execute(() -> ack.accept(-1));
            return;
        }
        q.publish();
        safeCall(i, () -> handlers[i].stopped(q));
        q.publish();
        if (wakeupFd[i] >= 0) {
            epoll.remove(wakeupFd[i]);
            wakeupFd[i] = -1;
        }
        if (wakeupPolled[i]) {
            wakeupPolled[i] = false;
            queuesWithoutKick--;
        }
        if (kickFd[i] >= 0) {
            if (mode != IdleMode.BUSY) {
                epoll.remove(kickFd[i]);
            }
        } else {
            queuesWithoutKick--;
        }
        kickFd[i] = -1;
        active[i] = null;
        activeCount--;
        stopping[i] = q;
        stopAcks[i] = ack;
        stopDeadlines[i] = System.nanoTime() + STOP_TIMEOUT_NANOS;
        stoppingCount++;
        finishStop(i);
    }

    /** Drains every stopping queue and acks those that are done. */
    private void finishStops() {
        for (int i = 0; i < stopping.length; i++) {
            if (stopping[i] != null) {
                finishStop(i);
            }
        }
    }

    /** Lets the handler of stopping queue {@code i} finish what it can; acks the stop when nothing is left. */
    private void finishStop(int i) {
        VirtQueue q = stopping[i];
        int left;
        try {
            left = handlers[i].drain(q);
        } catch (RuntimeException e) {
            failures.incrementAndGet();
            slotFailures.incrementAndGet(i);
            LOG.error("{}: queue {} handler failed while stopping; stopped without waiting", name, q.index(), e);
            left = 0;
        }
        if (left > 0 && System.nanoTime() - stopDeadlines[i] < 0) {
            return;
        }
        if (left > 0) {
            LOG.error("{}: queue {}: {} requests still in flight after {} s; stopped without waiting for them",
                    name, i, left, TimeUnit.NANOSECONDS.toSeconds(STOP_TIMEOUT_NANOS));
        }
        q.publish();
        LongConsumer ack = stopAcks[i];
        stopping[i] = null;
        stopAcks[i] = null;
        stoppingCount--;
        LOG.debug("{}: detached {}", name, q);
        long base = q.base();
        controlOf[i].execute(() -> ack.accept(base));
        ArrayDeque<Runnable> waiting = afterStop[i];
        while (waiting != null && stopping[i] == null && !waiting.isEmpty()) {
            waiting.poll().run();
        }
    }

    private void safeCall(int queue, Runnable r) {
        try {
            r.run();
        } catch (RuntimeException e) {
            failures.incrementAndGet();
            slotFailures.incrementAndGet(queue);
            LOG.error("{}: queue {} handler failed", name, queue, e);
        }
    }

    @Override
    public void run() {
        if (cpu >= 0) {
            pin();
        }
        while (running) {
            try {
                if (doWork() == 0) {
                    idle();
                } else {
                    idleSince = 0;
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
        if (stoppingCount > 0) {
            finishStops();
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
            slotFailures.incrementAndGet(i);
            if (!handlerFailureLogged[i]) {
                handlerFailureLogged[i] = true;
                LOG.error("{}: queue {} handler threw (further failures only counted)", name, i, e);
            }
            q.publish();
            return 0;
        }
    }

    /**
     * Runs this thread on {@link #cpu} alone and moves every other thread of the process (but other
     * pinned pollers) off the pinned CPUs. A failure is logged; the poller runs unpinned.
     */
    private void pin() {
        try {
            int tid = CpuAffinity.currentThreadId();
            PINNED_THREADS.add(tid);
            java.util.BitSet pinned;
            synchronized (PINNED_CPUS) {
                PINNED_CPUS.set(cpu);
                pinned = (java.util.BitSet) PINNED_CPUS.clone();
            }
            java.util.BitSet mine = new java.util.BitSet();
            mine.set(cpu);
            CpuAffinity.set(0, mine);
            int moved = CpuAffinity.keepOthersOff(pinned, PINNED_THREADS);
            LOG.info("{}: pinned to CPU {} (thread {}); {} other threads kept off CPUs {}", name, cpu, tid, moved, pinned);
        } catch (NativeException | RuntimeException e) {
            LOG.warn("{}: cannot pin to CPU {}: {}; running unpinned", name, cpu, e.getMessage());
        }
    }

    private void idle() {
        VirtQueue[] queues = active;
        if (mode == IdleMode.BUSY) {
            for (VirtQueue q : queues) {
                if (q != null) {
                    q.flushCoalesced(true);
                }
            }
            Thread.onSpinWait();
            return;
        }
        if (mode == IdleMode.ADAPTIVE) {
            long now = System.nanoTime();
            if (idleSince == 0) {
                idleSince = now;
            }
            long idleFor = now - idleSince;
            if (idleFor < YIELD_UNTIL_NANOS) {
                for (VirtQueue q : queues) {
                    if (q != null) {
                        q.flushCoalesced(true);
                    }
                }
                if (idleFor < SPIN_NANOS) {
                    Thread.onSpinWait();
                } else {
                    Thread.yield();
                }
                return;
            }
        }
        boolean more = false;
        for (VirtQueue q : queues) {
            if (q != null) {
                q.flushCoalesced(false); // about to sleep: nothing owed may wait for the next kick
                more |= q.enableNotifications();
            }
        }
        if (!more && commands.isEmpty()) {
            int n = epoll.await(queuesWithoutKick > 0 || stoppingCount > 0 ? NO_KICK_POLL_MILLIS : 1000);
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
            // Queues still stopping wait here for what they have in flight, up to their deadline.
            while (stoppingCount > 0) {
                try {
                    finishStops();
                } catch (RuntimeException e) {
                    failures.incrementAndGet();
                    LOG.error("{}: stopping a queue failed while closing", name, e);
                }
                if (stoppingCount > 0) {
                    LockSupport.parkNanos(100_000);
                }
            }
        }
        epoll.close();
        wakeFd.close();
    }
}
