package io.jvhost.core.runtime;

import io.jvhost.core.ring.VirtQueue;

import java.util.ArrayDeque;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.LongConsumer;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The stop state machine of a {@link Poller}'s slots. A queue being detached stops taking chains at
 * once, but its handler may still have requests in flight (a blk store's slow I/O); it waits here,
 * drained on every duty cycle while the poller goes on serving its other queues, until nothing is
 * left or {@link #STOP_TIMEOUT_NANOS} passed, and only then is its base acknowledged. Commands for
 * a slot that is stopping wait until it has stopped. Kept apart from the poller so that the duty
 * cycle reads as commands, stops, queues, idle. Poller thread only (and {@link Poller#close} once
 * that thread has ended).
 */
final class StoppingQueues {
    private static final Logger LOG = LoggerFactory.getLogger(StoppingQueues.class);
    /** How long a stopping queue may wait for its requests in flight before it is detached without them. */
    static final long STOP_TIMEOUT_NANOS = TimeUnit.SECONDS.toNanos(30);

    private final Poller poller;
    // Per slot: the stopping queue, who gets its base, until when it may wait.
    private final VirtQueue[] queues;
    private final LongConsumer[] acks;
    private final long[] deadlines;
    /** Per slot: attach and detach commands that came while it was stopping, run once it has stopped. */
    private final ArrayDeque<Runnable>[] afterStop;
    private int count;

    StoppingQueues(Poller poller, int slots) {
        this.poller = poller;
        this.queues = new VirtQueue[slots];
        this.acks = new LongConsumer[slots];
        this.deadlines = new long[slots];
        @SuppressWarnings("unchecked")
        ArrayDeque<Runnable>[] waiting = new ArrayDeque[slots];
        this.afterStop = waiting;
    }

    /** Whether any queue is stopping (then the poller drains it on every cycle and sleeps briefly). */
    boolean any() {
        return count > 0;
    }

    /** Runs {@code command} for {@code slot} now, or after its queue has stopped if it is stopping. */
    void whenStopped(int slot, Runnable command) {
        if (queues[slot] == null) {
            command.run();
        } else {
            if (afterStop[slot] == null) {
                afterStop[slot] = new ArrayDeque<>();
            }
            afterStop[slot].add(command);
        }
    }

    /** Queue {@code q}, just taken off the running set of {@code slot}, stops; {@code ack} gets its base once it has. */
    void begin(int slot, VirtQueue q, LongConsumer ack) {
        queues[slot] = q;
        acks[slot] = ack;
        deadlines[slot] = System.nanoTime() + STOP_TIMEOUT_NANOS;
        count++;
        finish(slot);
    }

    /** Drains every stopping queue and acks those that are done. */
    void finishAll() {
        for (int i = 0; i < queues.length; i++) {
            if (queues[i] != null) {
                finish(i);
            }
        }
    }

    /**
     * Drains and acks every stopping queue until none is left, each waiting for its requests in
     * flight up to its deadline. For {@link Poller#close} once the poller's thread has ended.
     */
    void awaitAll() {
        while (count > 0) {
            try {
                finishAll();
            } catch (RuntimeException e) {
                poller.countFailure();
                LOG.error("{}: stopping a queue failed while closing", poller.name(), e);
            }
            if (count > 0) {
                LockSupport.parkNanos(100_000);
            }
        }
    }

    /** Lets the handler of stopping queue {@code i} finish what it can; acks the stop when nothing is left. */
    private void finish(int i) {
        VirtQueue q = queues[i];
        int left;
        try {
            left = poller.handler(i).drain(q);
        } catch (RuntimeException e) {
            poller.countFailure(i);
            LOG.error("{}: queue {} handler failed while stopping; stopped without waiting", poller.name(), q.index(), e);
            left = 0;
        }
        if (left > 0 && System.nanoTime() - deadlines[i] < 0) {
            return;
        }
        if (left > 0) {
            LOG.error("{}: queue {}: {} requests still in flight after {} s; stopped without waiting for them",
                    poller.name(), i, left, TimeUnit.NANOSECONDS.toSeconds(STOP_TIMEOUT_NANOS));
        }
        q.publish();
        LongConsumer ack = acks[i];
        queues[i] = null;
        acks[i] = null;
        count--;
        LOG.debug("{}: detached {}", poller.name(), q);
        long base = q.position().base();
        poller.controlOf(i).execute(() -> ack.accept(base));
        ArrayDeque<Runnable> waiting = afterStop[i];
        while (waiting != null && queues[i] == null && !waiting.isEmpty()) {
            waiting.poll().run();
        }
    }
}
