package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.metrics.QueueLatency;
import io.jvhost.core.sys.LibC;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static java.lang.foreign.ValueLayout.JAVA_SHORT;
import static java.nio.ByteOrder.LITTLE_ENDIAN;

/**
 * One split virtqueue as the device sees it (virtio 1.2 §2.7).
 *
 * <p>The control thread builds and configures a queue while it is detached; from
 * {@link #attach} on it belongs to one poller thread, which alone calls {@link #next()},
 * {@link #complete} and {@link #publish()} until the queue is handed back. Ring corruption latches
 * the queue {@link #isBroken() broken}: it is not touched again until reconfigured, and its err
 * eventfd is written once.
 */
public final class VirtQueue {
    private static final Logger LOG = LoggerFactory.getLogger(VirtQueue.class);
    static final VarHandle U16_VH = JAVA_SHORT.withOrder(LITTLE_ENDIAN).varHandle();
    static final int IDX_OFFSET = 2, RING_OFFSET = 4, USED_ELEM_SIZE = 8;
    static final int VRING_USED_F_NO_NOTIFY = 1, VRING_AVAIL_F_NO_INTERRUPT = 1;
    public static final int MAX_SIZE = 32768;

    private final int index;
    private final QueueCounters counters = new QueueCounters();
    private final QueueLatency latency = QueueLatency.ENABLED ? new QueueLatency() : null;
    private final boolean[] errorLogged = new boolean[ChainError.values().length];
    /** Test hook, null unless a test installs one: see {@link GuestWriteObserver}. */
    private static volatile GuestWriteObserver writeObserver;

    // Configuration, set by the control thread while detached.
    private int size;
    private MemorySegment desc;
    private MemorySegment avail;
    private MemorySegment used;
    private GuestMemory memory = GuestMemory.EMPTY;
    private boolean eventIdx;
    private boolean indirect;
    private volatile int callFd = -1;
    private volatile int pollerWakeFd = -1;
    private int errFd = -1;
    private DescriptorChain chain;
    private InflightLog inflight;
    private DirtyLog log;
    private long usedGpa;
    private int[] resubmit = new int[0];
    private int resubmitCount;
    private int resubmitNext;

    // Ring position, owned by the poller while attached.
    private int lastAvailIdx;
    private int availIdxCache;
    private int usedIdx;
    private int usedIdxAtLastPublish;
    private boolean baseCorrected;
    private boolean broken;
    /** After a rewind: the avail index that was not enough; -1 when not starved. */
    private int starvedAt = -1;

    public VirtQueue(int index) {
        this.index = index;
    }

    public int index() {
        return index;
    }

    public int size() {
        return size;
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
        if (QueueLatency.ENABLED) {
            latency.workSeen();
        }
    }

    public GuestMemory memory() {
        return memory;
    }

    public boolean isBroken() {
        return broken;
    }

    /** The avail index the device will read next (what GET_VRING_BASE returns). */
    public int lastAvailIdx() {
        return lastAvailIdx;
    }

    /** The device's used index, published or not. */
    public int usedIdx() {
        return usedIdx;
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
        if (desc.byteSize() < 16L * size || avail.byteSize() < 6 + 2L * size || used.byteSize() < 6 + 8L * size) {
            throw new IllegalArgumentException("rings smaller than the queue size");
        }
        if (chain == null || this.size != size) {
            chain = new DescriptorChain(size);
        }
        this.size = size;
        this.desc = desc;
        this.avail = avail;
        this.used = used;
        this.memory = memory;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
        this.errFd = errFd;
        this.lastAvailIdx = lastAvail & 0xFFFF;
        this.availIdxCache = lastAvailIdx;
        this.usedIdx = Short.toUnsignedInt((short) U16_VH.getAcquire(used, (long) IDX_OFFSET));
        this.usedIdxAtLastPublish = usedIdx;
        this.broken = false;
        this.starvedAt = -1;
        if (log != null) {
            observeUsedRing();
        }
        this.resubmitCount = 0;
        this.resubmitNext = 0;
        this.baseCorrected = false;
        if (inflight != null) {
            if (resubmit.length < size) {
                resubmit = new int[size];
            }
            resubmitCount = inflight.recover(used, usedIdx, resubmit);
            // What was taken is what was completed plus what is still in flight. The frontend's
            // base can be older: after a dropped connection QEMU rewinds to the used index it read
            // while the old session was still finishing requests.
            int taken = (usedIdx + resubmitCount) & 0xFFFF;
            if (taken != lastAvailIdx && lastAvailIdx != usedIdx) {
                LOG.warn("queue {}: frontend resumes at {} but {} requests were completed and {} are in flight;"
                        + " resuming at {}", index, lastAvailIdx, usedIdx, resubmitCount, taken);
                baseCorrected = true;
            }
            lastAvailIdx = taken;
            availIdxCache = lastAvailIdx;
            if (resubmitCount > 0) {
                LOG.info("queue {}: resubmitting {} requests left in flight by a previous backend", index, resubmitCount);
            }
        }
    }

    /**
     * Whether {@link #configure} resumed somewhere other than the frontend's base: completions the
     * driver may not have been interrupted for. Poller, after configure.
     */
    public boolean baseCorrected() {
        return baseCorrected;
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
        this.usedGpa = usedGpa;
    }

    /** Chains still to be resubmitted after a restart. */
    public int resubmitPending() {
        return resubmitCount - resubmitNext;
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

    private int availIdxAcquire() {
        return Short.toUnsignedInt((short) U16_VH.getAcquire(avail, (long) IDX_OFFSET));
    }

    /**
     * Re-reads the avail index into the cache, latching the queue broken instead when it moved by
     * more than the queue size. Every read of the driver's index goes through here, so that no
     * caller can leave an unchecked index in the cache for {@link #next()} to trust.
     */
    private void refreshAvailIdx() {
        int availIdx = availIdxAcquire();
        if (((availIdx - lastAvailIdx) & 0xFFFF) > size) {
            latchBroken("avail index jumped from " + lastAvailIdx + " to " + availIdx);
            return;
        }
        if (QueueLatency.ENABLED && availIdx != availIdxCache) {
            latency.workSeen(); // busy-polling has no kick: new buffers start the clock
        }
        availIdxCache = availIdx;
    }

    /** Whether the driver has made buffers available that the device has not taken. Poller. */
    public boolean hasAvailable() {
        if (!broken && resubmitNext < resubmitCount) {
            return true;
        }
        if (starvedAt >= 0) {
            int availIdx = availIdxAcquire();
            if (availIdx == starvedAt) {
                return false;
            }
            starvedAt = -1; // the driver added buffers: worth another try
        }
        if (!broken && availIdxCache == lastAvailIdx) {
            refreshAvailIdx();
        }
        return !broken && availIdxCache != lastAvailIdx;
    }

    /**
     * The next well-formed chain, or null when the ring is empty or broken. Malformed chains are
     * completed with length 0, counted and skipped. The returned flyweight is valid until the next call.
     * Poller thread.
     */
    public DescriptorChain next() {
        while (true) {
            if (broken) {
                return null;
            }
            if (resubmitNext < resubmitCount) { // a previous backend's requests come first, in order
                int head = resubmit[resubmitNext++];
                ChainError error = chain.parse(desc, size, head, memory, indirect);
                chain.log = log;
                if (error == null) {
                    if (log != null) {
                        observeWrites(chain);
                    }
                    counters.chains++;
                    counters.descriptors += chain.count();
                    return chain;
                }
                reject(head, error);
                continue;
            }
            if (availIdxCache == lastAvailIdx) {
                refreshAvailIdx();
                if (broken || availIdxCache == lastAvailIdx) {
                    return null;
                }
            }
            long slot = RING_OFFSET + 2L * (lastAvailIdx & (size - 1));
            int head = Short.toUnsignedInt(avail.get(LE_SHORT, slot));
            if (head >= size) {
                latchBroken("head " + head + " out of range for size " + size);
                return null;
            }
            lastAvailIdx = (lastAvailIdx + 1) & 0xFFFF;
            ChainError error = chain.parse(desc, size, head, memory, indirect);
            chain.log = log;
            if (error == null) {
                if (log != null) {
                    observeWrites(chain);
                }
                if (inflight != null) {
                    inflight.mark(head);
                }
                counters.chains++;
                counters.descriptors += chain.count();
                return chain;
            }
            reject(head, error);
        }
    }

    /**
     * Installs (or with null removes) the test hook that is told every guest range a queue may write
     * while migrating. For tests only; any thread.
     */
    public static void observeGuestWrites(GuestWriteObserver observer) {
        writeObserver = observer;
    }

    private void observeWrites(DescriptorChain c) {
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
    private void observeUsedRing() {
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
        lastAvailIdx = (lastAvailIdx - count) & 0xFFFF;
        counters.chains -= count;
        // What is available is not enough: only new buffers count as work, so the poller may sleep.
        starvedAt = availIdxCache;
    }

    private void reject(int head, ChainError error) {
        counters.chainsRejected[error.ordinal()]++;
        counters.rejectedTotal++;
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
        long e = RING_OFFSET + (long) USED_ELEM_SIZE * (usedIdx & (size - 1));
        used.set(LE_INT, e, head);
        used.set(LE_INT, e + 4, (int) writtenLength);
        if (log != null) {
            log.mark(usedGpa + e, USED_ELEM_SIZE);
        }
        usedIdx = (usedIdx + 1) & 0xFFFF;
        counters.bytesWritten += writtenLength;
    }

    /**
     * Makes completed elements visible to the driver with one release store and interrupts it if
     * it asked to be (EVENT_IDX used_event, else the NO_INTERRUPT flag). Poller.
     */
    public void publish() {
        if (usedIdx == usedIdxAtLastPublish || broken) {
            return;
        }
        U16_VH.setRelease(used, (long) IDX_OFFSET, (short) usedIdx);
        if (log != null) {
            log.mark(usedGpa + IDX_OFFSET, 2);
        }
        if (inflight != null) {
            inflight.published(used, usedIdxAtLastPublish, usedIdx);
        }
        VarHandle.fullFence(); // the driver's used_event / flags written before our index was seen
        boolean notify;
        if (eventIdx) {
            int usedEvent = Short.toUnsignedInt(avail.get(LE_SHORT, RING_OFFSET + 2L * size));
            notify = ((usedIdx - usedEvent - 1) & 0xFFFF) < ((usedIdx - usedIdxAtLastPublish) & 0xFFFF);
        } else {
            notify = (avail.get(LE_SHORT, 0) & VRING_AVAIL_F_NO_INTERRUPT) == 0;
        }
        if (QueueLatency.ENABLED) {
            latency.published((usedIdx - usedIdxAtLastPublish) & 0xFFFF);
        }
        usedIdxAtLastPublish = usedIdx;
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
        if (!eventIdx && !broken) {
            U16_VH.setRelease(used, 0L, (short) VRING_USED_F_NO_NOTIFY);
            if (log != null) {
                log.mark(usedGpa, 2);
            }
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
        if (eventIdx) {
            // Starved: ask for a kick when buffers beyond those already seen arrive.
            U16_VH.setRelease(used, RING_OFFSET + (long) USED_ELEM_SIZE * size,
                    (short) (starvedAt >= 0 ? starvedAt : lastAvailIdx));
            if (log != null) {
                log.mark(usedGpa + RING_OFFSET + (long) USED_ELEM_SIZE * size, 2);
            }
        } else {
            U16_VH.setRelease(used, 0L, (short) 0);
            if (log != null) {
                log.mark(usedGpa, 2);
            }
        }
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

    static final java.lang.foreign.ValueLayout.OfShort LE_SHORT = JAVA_SHORT.withOrder(LITTLE_ENDIAN);
    static final java.lang.foreign.ValueLayout.OfInt LE_INT =
            java.lang.foreign.ValueLayout.JAVA_INT.withOrder(LITTLE_ENDIAN);

    @Override
    public String toString() {
        return "vq" + index + "(size " + size + ", avail " + lastAvailIdx + ", used " + usedIdx
                + (broken ? ", BROKEN" : "") + ")";
    }
}
