package io.jvhost.core.ring;

import io.jvhost.core.sys.LibC;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A {@link VirtQueue}'s bad-input bookkeeping: every refused chain and every completion for a chain
 * not in flight is counted, and each kind is logged once per queue (the process must never drown
 * in its own log for what a guest sends); ring corruption is counted, logged and signalled on the
 * queue's err eventfd (the queue latches itself broken, so once per configure). Logged under the
 * queue's logger. Poller thread; {@link #errFd} by the control thread while detached.
 */
final class Refusals {
    private static final Logger LOG = LoggerFactory.getLogger(VirtQueue.class);
    private final int index;
    private final QueueCounters counters;
    private final boolean[] logged = new boolean[ChainError.values().length];
    private boolean completionLogged;
    private int errFd = -1;

    Refusals(int index, QueueCounters counters) {
        this.index = index;
        this.counters = counters;
    }

    /** The eventfd that tells the frontend a queue needs a reset; -1 for none. */
    void errFd(int fd) {
        this.errFd = fd;
    }

    /** The ring is corrupt and the queue has just latched itself broken: counted, logged, err eventfd written. */
    void ringCorrupt(String why) {
        counters.ringCorruptions++;
        LOG.error("queue {}: ring corrupt, stopped until the driver resets it: {}", index, why);
        if (errFd >= 0) {
            LibC.eventfdSignal(errFd);
        }
    }

    /** Counts a refused chain, well formed or not. */
    void count(ChainError error) {
        counters.chainsRejected[error.ordinal()]++;
        counters.rejectedTotal++;
    }

    /** A malformed chain at {@code head}, about to be completed with 0 bytes: counted, logged once per error. */
    void malformed(int head, ChainError error) {
        count(error);
        if (!logged[error.ordinal()]) {
            logged[error.ordinal()] = true;
            LOG.warn("queue {}: refused chain at head {}: {} (completed with 0 bytes; further ones only counted)",
                    index, head, error.description());
        }
    }

    /** A completion for a chain that is not in flight: a device bug, logged once and otherwise ignored. */
    void completion(int head) {
        counters.handlerExceptions++;
        if (!completionLogged) {
            completionLogged = true;
            LOG.error("queue {}: completion for chain {}, which is not in flight, ignored (further ones only counted)",
                    index, head);
        }
    }
}
