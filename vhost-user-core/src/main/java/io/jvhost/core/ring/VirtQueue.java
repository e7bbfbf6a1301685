package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.metrics.QueueLatency;
import io.jvhost.core.sys.LibC;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One virtqueue as the device sees it: {@link #next()} hands out parsed chains, {@link #complete}
 * and {@link #publish()} return them, and the queue keeps the counters, the broken latch, the
 * eventfds and the latency clock. The memory layout (split ring today, packed next) is its
 * {@link Ring}'s business.
 *
 * <p>The control thread builds and configures a queue while it is detached; once a
 * poller starts it, it belongs to that poller thread, which alone calls {@link #next()},
 * {@link #complete} and {@link #publish()} until the queue is handed back. Ring corruption latches
 * the queue {@link #isBroken() broken}: it is not touched again until reconfigured, and its err
 * eventfd is written once.
 */
public final class VirtQueue {
    private static final Logger LOG = LoggerFactory.getLogger(VirtQueue.class);
    public static final int MAX_SIZE = 32768;

    private final int index;
    private final QueueCounters counters = new QueueCounters();
    private final QueueLatency latency = QueueLatency.ENABLED ? new QueueLatency() : null;
    private final boolean[] errorLogged = new boolean[ChainError.values().length];
    private final SplitRing split = new SplitRing(this);
    /** Test hook, null unless a test installs one: see {@link GuestWriteObserver}. */
    private static volatile GuestWriteObserver writeObserver;

    // Configuration, set by the control thread while detached.
    private Ring ring = split;
    private volatile int callFd = -1;
    private volatile int pollerWakeFd = -1;
    private int errFd = -1;
    private DescriptorChain chain;
    private InflightLog inflight;
    private DirtyLog log;
    private boolean broken;

    public VirtQueue(int index) {
        this.index = index;
    }

    public int index() {
        return index;
    }

    public int size() {
        return ring.size;
    }

    public QueueCounters counters() {
        return counters;
    }

    /** Latency and batch histograms, or null unless {@code -Djvhost.latency=true}. */
    public QueueLatency latency() {
        return latency;
    }

    /** The poller was kicked for this queue: the latency clock starts. Poller. */
    public void kicked() {
        counters.kicks++;
        workSeen();
    }

    /** New work was seen (a kick, or a ring that moved while busy-polling). Poller. */
    void workSeen() {
        if (QueueLatency.ENABLED) {
            latency.workSeen();
        }
    }

    public GuestMemory memory() {
        return ring.memory;
    }

    public boolean isBroken() {
        return broken;
    }

    /** The avail index the device will read next (what GET_VRING_BASE returns). */
    public int lastAvailIdx() {
        return ring.availIdx();
    }

    /** The device's used index, published or not. */
    public int usedIdx() {
        return ring.usedIdx();
    }

    /**
     * Points the queue at its rings (already translated and bounds-checked by the caller) and
     * resumes at {@code lastAvail}; the used index is taken from the ring itself, which the driver
     * owns across device restarts. Control thread, while detached.
     */
    public void configure(int size, MemorySegment desc, MemorySegment avail, MemorySegment used, GuestMemory memory,
                          int lastAvail, boolean eventIdx, boolean indirect, int errFd) {
        if (Integer.bitCount(size) != 1 || size > MAX_SIZE) {
            throw new IllegalArgumentException("queue size " + size);
        }
        split.configure(size, desc, avail, used, memory, lastAvail, eventIdx, indirect, inflight);
        ring = split;
        if (chain == null || chain.capacity() != size) {
            chain = new DescriptorChain(size);
        }
        chain.log = log;
        this.errFd = errFd;
        this.broken = false;
        if (log != null) {
            observeUsedRing(used, memory);
        }
    }

    /**
     * Whether {@link #configure} resumed somewhere other than the frontend's base: completions the
     * driver may not have been interrupted for. Poller, after configure.
     */
    public boolean baseCorrected() {
        return ring.baseCorrected();
    }

    /**
     * Tracks in-flight chains in {@code region} (one queue's slice of INFLIGHT_SHMFD), or stops
     * tracking with null. Takes effect, with recovery, at the next {@link #configure}. Control
     * thread, while detached.
     */
    public void inflight(MemorySegment region, int queueSize) {
        this.inflight = region == null ? null : new InflightLog(region, queueSize);
    }

    /**
     * Logs every write into guest memory (used ring at {@code usedGpa}, device writes through the
     * chains) to {@code log}, or stops with null. Control thread while detached, before configure.
     */
    public void dirtyLog(DirtyLog log, long usedGpa) {
        this.log = log;
        split.dirtyLog(log, usedGpa);
    }

    /** Chains still to be resubmitted after a restart. */
    public int resubmitPending() {
        return ring.resubmitPending();
    }

    /** The eventfd that wakes the poller owning this queue; set by the poller. */
    public void pollerWakeFd(int fd) {
        this.pollerWakeFd = fd;
    }

    /**
     * Wakes the poller that owns this queue, so that work completed on another thread (an I/O
     * worker) is published promptly even while the poller sleeps. Any thread.
     */
    public void wakePoller() {
        int fd = pollerWakeFd;
        if (fd >= 0) {
            LibC.eventfdSignal(fd);
        }
    }

    /** Sets the eventfd used to interrupt the driver; -1 for none. Any thread. */
    public void callFd(int fd) {
        this.callFd = fd;
    }

    /** Whether the driver has made buffers available that the device has not taken. Poller. */
    public boolean hasAvailable() {
        return !broken && ring.hasAvailable();
    }

    /**
     * The next well-formed chain, or null when the ring is empty or broken. Malformed chains are
     * completed with length 0, counted and skipped. The returned flyweight is valid until the next call.
     * Poller thread.
     */
    public DescriptorChain next() {
        DescriptorChain c = chain;
        while (!broken && ring.take(c)) {
            ChainError error = c.error();
            if (error == null) {
                if (log != null) {
                    observeWrites(c);
                }
                counters.chains++;
                counters.descriptors += c.count();
                counters.bytesRead += c.readableLength();
                return c;
            }
            reject(c.head(), error);
        }
        return null;
    }

    /**
     * Installs (or with null removes) the test hook that is told every guest range a queue may write
     * while migrating. For tests only; any thread.
     */
    public static void observeGuestWrites(GuestWriteObserver observer) {
        writeObserver = observer;
    }

    private static void observeWrites(DescriptorChain c) {
        GuestWriteObserver o = writeObserver;
        if (o != null) {
            for (int i = c.readableCount(); i < c.count(); i++) {
                if (c.region(i) >= 0) {
                    o.mayWrite(c.gpa(i), Integer.toUnsignedLong(c.length(i)));
                }
            }
        }
    }

    /** The used ring, located from its mapping (not from the address the dirty log uses). */
    private static void observeUsedRing(MemorySegment used, GuestMemory memory) {
        GuestWriteObserver o = writeObserver;
        for (int r = 0; o != null && r < memory.regionCount(); r++) {
            MemorySegment region = memory.segment(r);
            long at = used.address() - region.address();
            if (at >= 0 && at + used.byteSize() <= region.byteSize()) {
                o.mayWrite(memory.gpaBase(r) + at, used.byteSize());
                return;
            }
        }
    }

    /**
     * Gives back the last {@code count} chains taken with {@link #next()} and not completed, so
     * they are taken again later (e.g. a mergeable receive that ran out of buffers mid-frame).
     * Only valid when no malformed chain was skipped meanwhile (its completion cannot be undone):
     * compare {@link QueueCounters#chainsRejected()} before and after. Poller.
     */
    public void rewind(int count) {
        ring.rewind(count);
        counters.chains -= count;
    }

    private void reject(int head, ChainError error) {
        countRejected(error);
        if (!errorLogged[error.ordinal()]) {
            errorLogged[error.ordinal()] = true;
            LOG.warn("queue {}: refused chain at head {}: {} (completed with 0 bytes; further ones only counted)",
                    index, head, error.description());
        }
        complete(head, 0);
    }

    /** Counts a device-level refusal of a well-formed chain the same way as a malformed one. Poller. */
    public void countRejected(ChainError error) {
        counters.chainsRejected[error.ordinal()]++;
        counters.rejectedTotal++;
    }

    /** Writes a used element for {@code chain}; it becomes visible at {@link #publish()}. Poller. */
    public void complete(DescriptorChain chain, long writtenLength) {
        complete(chain.head(), writtenLength);
    }

    /** Writes a used element for the chain at {@code head}. Poller. */
    public void complete(int head, long writtenLength) {
        if (broken) {
            return;
        }
        ring.complete(head, writtenLength);
        counters.bytesWritten += writtenLength;
    }

    /**
     * Makes completed elements visible to the driver with one release store and interrupts it if
     * it asked to be (EVENT_IDX used_event, else the NO_INTERRUPT flag). Poller.
     */
    public void publish() {
        if (broken) {
            return;
        }
        int published = ring.publishUsed();
        if (published == 0) {
            return;
        }
        boolean notify = ring.interruptWanted();
        if (QueueLatency.ENABLED) {
            latency.published(published);
        }
        int fd = callFd;
        if (notify && fd >= 0) {
            LibC.eventfdSignal(fd);
            counters.notificationsSent++;
        } else {
            counters.notificationsSuppressed++;
        }
    }

    /** Asks the driver not to kick while the poller is busy with this queue. Poller. */
    public void disableNotifications() {
        if (!broken) {
            ring.disableNotifications();
        }
    }

    /**
     * Asks the driver to kick for the next buffer, then re-checks the ring so a buffer made
     * available in between is not missed. Returns true when there is work after all. Poller.
     */
    public boolean enableNotifications() {
        if (broken) {
            return false;
        }
        ring.enableNotifications();
        VarHandle.fullFence();
        return hasAvailable();
    }

    /** Marks the queue broken (NEEDS_RESET): it is left alone until reconfigured. Poller. */
    public void latchBroken(String why) {
        if (broken) {
            return;
        }
        broken = true;
        counters.ringCorruptions++;
        LOG.error("queue {}: ring corrupt, stopped until the driver resets it: {}", index, why);
        if (errFd >= 0) {
            LibC.eventfdSignal(errFd);
        }
    }

    @Override
    public String toString() {
        return "vq" + index + "(size " + ring.size + ", avail " + ring.availIdx() + ", used " + ring.usedIdx()
                + (broken ? ", BROKEN" : "") + ")";
    }
}
