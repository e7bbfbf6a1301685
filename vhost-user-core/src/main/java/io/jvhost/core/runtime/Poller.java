package io.jvhost.core.runtime;

import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.ring.VirtQueue;

import java.util.concurrent.Executor;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
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
 * the control thread) when nothing is left in flight or {@link StoppingQueues#STOP_TIMEOUT_NANOS} passed.
 * Commands for a queue that is stopping wait until it has stopped ({@link StoppingQueues}).
 *
 * <p>The poller itself is the duty cycle and the slots; what it does when idle is
 * {@link AdaptiveIdle} (spin, yield) and {@link PollerWakeups} (going to sleep, on the epoll set of
 * kick and wakeup fds), and CPU pinning is {@link PollerPinning}.
 *
 * <p>A poller's queues sit in slots. A backend's own poller has a slot per queue of that backend
 * (slot = queue index); a shared poller ({@link #Poller(String, IdleMode, int)}) serves
 * queues of several backends, each {@linkplain #register registered} in a slot of its own.
 */
public final class Poller implements Runnable, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Poller.class);
    private static final int BUDGET = 64, COMMAND_LIMIT = 64;

    private final String name;
    /** The CPU this poller runs on, or -1: any. */
    private final int cpu;
    private final AdaptiveIdle spinning;
    private final QueueHandler[] handlers;
    /** Shared pollers: which slots are taken (guarded by {@code this}); null for a backend's own poller. */
    private final boolean[] taken;
    /** Per slot: exceptions that escaped that slot's handler (what a shared poller's backends count as theirs). */
    private final AtomicLongArray slotFailures;
    /** Per slot: the control thread of the queue's backend, where its acknowledgements run. */
    private final Executor[] controlOf;
    private final MpscAtomicArrayQueue<PollerCommand> commands = new MpscAtomicArrayQueue<>(1024);
    private final PollerWakeups wakeups;
    private final VirtQueue[] active;
    private final boolean[] handlerFailureLogged;
    private final StoppingQueues stops;
    private int activeCount;
    /** Chains and frames the queues' handlers moved in the last duty cycle (its commands not counted). */
    private int traffic;
    private volatile boolean running = true;
    private Thread thread;
    /** Exceptions that escaped a handler, a command or a duty cycle: each one is a bug. */
    private final AtomicLong failures = new AtomicLong();
    private final PollerLoad load = new PollerLoad();

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
        this.cpu = cpu;
        this.spinning = new AdaptiveIdle(mode);
        this.handlers = handlers;
        this.taken = taken;
        this.slotFailures = new AtomicLongArray(handlers.length);
        this.controlOf = new Executor[handlers.length];
        java.util.Arrays.fill(controlOf, control);
        this.wakeups = new PollerWakeups(name, mode, handlers.length);
        this.active = new VirtQueue[handlers.length];
        this.handlerFailureLogged = new boolean[handlers.length];
        this.stops = new StoppingQueues(this, handlers.length);
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
        post(p -> p.stops.whenStopped(slot, () -> {
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
    /** Exceptions that escaped a handler, a command or a duty cycle (each survived; the fuzz tests assert 0). Any thread. */
    public long failures() {
        return failures.get();
    }

    /** Where this poller's time goes: busy and idle nanoseconds. Any thread. */
    public PollerLoad load() {
        return load;
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
        wakeups.wake();
    }

    /**
     * Starts processing {@code queue} in {@code slot} with {@code config} (once it has stopped, if it
     * is stopping), then runs {@code ack} on the control thread.
     */
    public void attach(int slot, VirtQueue queue, QueueConfig config, Runnable ack) {
        post(p -> p.stops.whenStopped(slot, () -> {
            try {
                p.doAttach(slot, queue, config);
            } catch (RuntimeException e) { // a check the control side missed: the queue does not run, the start is answered
                if (p.active[slot] == queue) {
                    p.deactivate(slot);
                }
                throw e; // counted and logged as a poller failure
            } finally {
                controlOf[slot].execute(ack);
            }
        }));
    }

    /**
     * Stops processing the queue in {@code slot}; once its handler has nothing left in flight (or
     * {@link StoppingQueues#STOP_TIMEOUT_NANOS} passed), {@code ack} gets its base
     * ({@link io.jvhost.core.ring.QueuePosition#base()}, what GET_VRING_BASE answers) on the control
     * thread, -1 if it was not running. The poller serves its other queues meanwhile.
     */
    public void detach(int slot, LongConsumer ack) {
        post(p -> p.stops.whenStopped(slot, () -> p.beginDetach(slot, ack)));
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
        if (q.position().baseCorrected() && c.callFd() >= 0) {
            LibC.eventfdSignal(c.callFd()); // the interrupt for those completions may have gone to a dead connection
        }
        q.pollerWakeFd(wakeups.wakeFd());
        if (active[i] == null) {
            activeCount++;
        }
        active[i] = q;
        spinning.serves(i, handlers[i].sleepWhenIdle());
        wakeups.watchKick(i, c.kickFd());
        q.onDemand(handlers[i].takesBuffersOnDemand());
        q.disableNotifications();
        safeCall(i, () -> handlers[i].started(q));
        wakeups.watchWakeup(i, handlers[i].wakeupFd()); // the handler's own fd: a TAP device, a store's completion eventfd
        LOG.debug("{}: attached {}", name, q);
    }

    /**
     * Takes queue {@code i} off the running set at once (no more chains, kicks or device wakeups),
     * then lets its handler finish what is in flight; {@link StoppingQueues} acks it.
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
        deactivate(i);
        stops.begin(i, q, ack);
    }

    /** Takes the queue in slot {@code i} off the running set: no more chains, kicks or device wakeups. */
    private void deactivate(int i) {
        wakeups.unwatch(i);
        active[i] = null;
        activeCount--;
        spinning.serves(i, false);
    }

    /** The handler in {@code slot}. */
    QueueHandler handler(int slot) {
        return handlers[slot];
    }

    /** Where the acknowledgements of {@code slot}'s queue run: its backend's control thread. */
    Executor controlOf(int slot) {
        return controlOf[slot];
    }

    /** Counts an exception that escaped the handler in {@code slot}. Poller thread. */
    void countFailure(int slot) {
        failures.incrementAndGet();
        slotFailures.incrementAndGet(slot);
    }

    /** Counts an exception that escaped no handler but a command or the poller's own work. */
    void countFailure() {
        failures.incrementAndGet();
    }

    private void safeCall(int queue, Runnable r) {
        try {
            r.run();
        } catch (RuntimeException e) {
            countFailure(queue);
            LOG.error("{}: queue {} handler failed", name, queue, e);
        }
    }

    @Override
    public void run() {
        if (cpu >= 0) {
            PollerPinning.pin(name, cpu);
        }
        load.start();
        while (running) {
            try {
                if (doWork() == 0) {
                    idle();
                } else if (traffic > 0) {
                    spinning.worked(); // a command alone does not end an idle spell: it is no traffic
                    load.moved();
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
        if (stops.any()) {
            stops.finishAll();
        }
        int moved = 0;
        VirtQueue[] queues = active;
        for (int i = 0; i < queues.length; i++) {
            VirtQueue q = queues[i];
            if (q != null && !q.isBroken()) {
                moved += process(i, q);
            }
        }
        traffic = moved;
        return work + moved;
    }

    private int process(int i, VirtQueue q) {
        try {
            return handlers[i].process(q, BUDGET);
        } catch (RuntimeException e) {
            q.counters().handlerExceptions++;
            countFailure(i);
            if (!handlerFailureLogged[i]) {
                handlerFailureLogged[i] = true;
                LOG.error("{}: queue {} handler threw (further failures only counted)", name, i, e);
            }
            q.publish();
            return 0;
        }
    }

    /** Nothing to do: spins or yields ({@link AdaptiveIdle}), or sleeps until a kick, a wakeup fd or a command. */
    private void idle() {
        load.idleBegins();
        try {
            if (!spinning.spinOrYield(active)) {
                wakeups.sleep(active, commands, stops.any());
            }
        } finally {
            load.idleEnded(); // a failed sleep ends the idle spell too
        }
    }

    /**
     * Stops the thread after its current cycle, runs the commands it had not taken yet, and
     * releases its fds. Control thread.
     */
    @Override
    public void close() {
        running = false;
        wakeups.wake();
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
            stops.awaitAll(); // queues still stopping wait here for what they have in flight, up to their deadline
        }
        wakeups.close();
    }
}
