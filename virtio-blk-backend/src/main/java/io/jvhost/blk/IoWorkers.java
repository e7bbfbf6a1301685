package io.jvhost.blk;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;

import org.jctools.queues.atomic.MpmcAtomicArrayQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Threads that run blocking I/O so pollers never do. Pollers {@link #submit} through a JCTools MPMC
 * queue; an idle worker parks and is unparked by the next submission (no locks on either side).
 */
public final class IoWorkers<T> implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(IoWorkers.class);
    private static final int SPINS_BEFORE_PARK = 200;

    private final MpmcAtomicArrayQueue<T> queue;
    private final Consumer<T> action;
    private final Thread[] threads;
    private final AtomicInteger sleepers = new AtomicInteger();
    private volatile boolean running = true;

    public IoWorkers(String name, int workers, int capacity, Consumer<T> action) {
        this.queue = new MpmcAtomicArrayQueue<>(capacity);
        this.action = action;
        this.threads = new Thread[workers];
        for (int i = 0; i < workers; i++) {
            threads[i] = Thread.ofPlatform().name(name + "-io-" + i).daemon(true).start(this::run);
        }
    }

    /** Queues one item; never blocks for long (the queue holds every request that can exist). */
    public void submit(T item) {
        while (!queue.offer(item)) {
            Thread.onSpinWait();
        }
    }

    /** Wakes sleeping workers after a batch of {@link #submit}s. */
    public void signal() {
        if (sleepers.get() > 0) {
            for (Thread t : threads) {
                LockSupport.unpark(t);
            }
        }
    }

    private void run() {
        int idle = 0;
        while (running) {
            T item = queue.poll();
            if (item != null) {
                idle = 0;
                try {
                    action.accept(item);
                } catch (RuntimeException e) {
                    LOG.error("I/O worker failed on {}", item, e);
                }
                continue;
            }
            if (++idle < SPINS_BEFORE_PARK) {
                Thread.onSpinWait();
                continue;
            }
            sleepers.incrementAndGet();
            if (queue.isEmpty() && running) { // re-check after announcing: no lost wakeup
                LockSupport.parkNanos(10_000_000L);
            }
            sleepers.decrementAndGet();
        }
    }

    @Override
    public void close() {
        running = false;
        for (Thread t : threads) {
            LockSupport.unpark(t);
        }
        for (Thread t : threads) {
            try {
                t.join(5000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
