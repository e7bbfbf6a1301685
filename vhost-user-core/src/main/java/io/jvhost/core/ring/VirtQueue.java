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
 * eventfds and the latency clock. The memory layout (split or packed ring) is its {@link Ring}'s
 * business; a device never needs to know which one the driver chose.
 *
 * <p>With VIRTIO_F_IN_ORDER negotiated ({@link #IN_ORDER}) the device must use buffers in the order
 * they were made available; the queue sees to it whatever order the device completes them in:
 * a completion that overtakes an earlier chain waits until that one is completed too.
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
    /** {@link #configure} options, from the negotiated features: VIRTIO_RING_F_EVENT_IDX. */
    public static final int EVENT_IDX = 1;
    /** VIRTIO_RING_F_INDIRECT_DESC. */
    public static final int INDIRECT = 2;
    /** VIRTIO_F_RING_PACKED: the packed layout (else split). */
    public static final int PACKED = 4;
    /** VIRTIO_F_IN_ORDER. */
    public static final int IN_ORDER = 8;

    private final int index;
    private final QueueCounters counters = new QueueCounters();
    private final QueueLatency latency = QueueLatency.ENABLED ? new QueueLatency() : null;
    private final boolean[] errorLogged = new boolean[ChainError.values().length];
    private final SplitRing split = new SplitRing(this);
    private final PackedRing packed = new PackedRing(this);
    /** Test hook, null unless a test installs one: see {@link GuestWriteObserver}. */
    private static volatile GuestWriteObserver writeObserver;

    // Configuration, set by the control thread while detached.
    private Ring ring = split;
    private volatile int callFd = -1;
    // Call coalescing (ethtool -C's rx-frames/rx-usecs): off when coalesceFrames is 0. Poller only.
    private int coalesceFrames;
    private long coalesceNanos;
    /** Entries published since the last call, when the first of them was, and whether a call is owed. */
    private int pendingEntries;
    private long pendingSince;
    private boolean callOwed;
    private volatile int pollerWakeFd = -1;
    private int errFd = -1;
    private DescriptorChain chain;
    private MemorySegment inflightRegion;
    private DirtyLog log;
    private boolean broken;
    private boolean completionRefusedLogged;
    // IN_ORDER: chains taken and not yet handed to the ring, oldest first, as a circular buffer of
    // the queue's size; per id, where its chain sits in it (-1: not taken).
    private boolean inOrder;
    private int[] orderId = new int[0];
    private long[] orderLength = new long[0];
    private boolean[] orderQuiet = new boolean[0];
    private boolean[] orderDone = new boolean[0];
    private int[] orderSlotOf = new int[0];
    private int orderHead, orderCount;

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

    /** Whether the queue runs on the packed layout (VIRTIO_F_RING_PACKED). */
    public boolean isPacked() {
        return ring == packed;
    }

    /** Whether VIRTIO_F_IN_ORDER was negotiated for the queue's rings. */
    public boolean isInOrder() {
        return inOrder;
    }

    /**
     * Where the device takes the next chain: the avail index of a split ring, or the position in a
     * packed ring with its wrap counter in bit 15.
     */
    public int lastAvailIdx() {
        return ring.availIdx();
    }

    /**
     * What GET_VRING_BASE answers (and SET_VRING_BASE sets): the avail index of a split ring; for a
     * packed ring the avail position and wrap counter (bit 15) in the low 16 bits and the used
     * position and wrap counter in the high 16 bits, as QEMU lays it out.
     */
    public long base() {
        return ring.base();
    }

    /** The device's used index (packed: the used position with its wrap counter in bit 15), published or not. */
    public int usedIdx() {
        return ring.usedIdx();
    }

    /**
     * Why {@code base} cannot be where a queue of {@code size} resumes, or null when it can: split
     * bases are 16 bits; a packed base's positions must be in the ring, used at most a ring behind
     * avail. For the control thread's check before {@link #configure}.
     */
    public static String baseProblem(int size, long base, boolean packed) {
        if (packed) {
            return PackedRing.baseProblem(size, base);
        }
        return base < 0 || base > 0xFFFF ? "split ring base " + base + " beyond 16 bits" : null;
    }

    /**
     * Points the queue at its split rings (already translated and bounds-checked by the caller) and
     * resumes at {@code lastAvail}; the used index is taken from the ring itself, which the driver
     * owns across device restarts. Control thread, while detached.
     */
    public void configure(int size, MemorySegment desc, MemorySegment avail, MemorySegment used, GuestMemory memory,
                          int lastAvail, boolean eventIdx, boolean indirect, int errFd) {
        configure(size, desc, avail, used, memory, lastAvail & 0xFFFF,
                (eventIdx ? EVENT_IDX : 0) | (indirect ? INDIRECT : 0), errFd);
    }

    /**
     * Points the queue at its areas, as SET_VRING_ADDR names them (descriptor table or ring, driver
     * area, device area; already translated and bounds-checked by the caller), in the layout and
     * with the ring features {@code options} says ({@link #EVENT_IDX}, {@link #INDIRECT},
     * {@link #PACKED}, {@link #IN_ORDER}), and resumes at {@code base} as SET_VRING_BASE gave it
     * (see {@link #base()}). A split ring's used index comes from the ring itself, which the driver
     * owns across device restarts; a packed ring's from the base, or from the inflight region when
     * it tracked requests before. Refuses a size or base that cannot be with
     * {@link IllegalArgumentException}, before anything changes. Control thread, while detached.
     */
    public void configure(int size, MemorySegment desc, MemorySegment driverArea, MemorySegment deviceArea,
                          GuestMemory memory, long base, int options, int errFd) {
        boolean isPacked = (options & PACKED) != 0;
        if (size < 1 || size > MAX_SIZE || (!isPacked && Integer.bitCount(size) != 1)) {
            throw new IllegalArgumentException("queue size " + size);
        }
        Ring r = isPacked ? packed : split;
        r.configure(size, desc, driverArea, deviceArea, memory, base, (options & EVENT_IDX) != 0,
                (options & INDIRECT) != 0, (options & IN_ORDER) != 0, inflightRegion);
        ring = r;
        if (chain == null || chain.capacity() != size) {
            chain = new DescriptorChain(size);
        }
        chain.log = log;
        inOrder = (options & IN_ORDER) != 0;
        if (inOrder && orderId.length != size) {
            orderId = new int[size];
            orderLength = new long[size];
            orderQuiet = new boolean[size];
            orderDone = new boolean[size];
            orderSlotOf = new int[size];
        }
        java.util.Arrays.fill(orderSlotOf, -1);
        java.util.Arrays.fill(orderDone, false);
        orderHead = 0;
        orderCount = 0;
        this.errFd = errFd;
        this.broken = false;
        if (log != null) {
            // The device writes the split ring's used ring; on a packed ring, the descriptors it
            // marks used in the ring itself and the device event suppression area.
            observeRingArea(deviceArea, memory);
            if (isPacked) {
                observeRingArea(desc, memory);
            }
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
     * Tracks in-flight chains in {@code region} (one queue's slice of INFLIGHT_SHMFD, laid out as
     * the ring's layout wants: {@link InflightLog} or {@link PackedInflightLog}), or stops tracking
     * with null. Takes effect, with recovery, at the next {@link #configure}. Control thread, while
     * detached.
     */
    public void inflight(MemorySegment region, int queueSize) {
        this.inflightRegion = region;
    }

    /**
     * Logs every write into guest memory (used ring at {@code usedGpa}, device writes through the
     * chains) to {@code log}, or stops with null. Control thread while detached, before configure.
     */
    public void dirtyLog(DirtyLog log, long usedGpa) {
        dirtyLog(log, -1, usedGpa);
    }

    /**
     * Logs every write into guest memory to {@code log}, or stops with null: the ring's own writes
     * (split: the used ring at {@code deviceAreaGpa}; packed: used descriptors in the ring at
     * {@code ringGpa} and the device event structure at {@code deviceAreaGpa}) and the device's
     * writes through the chains. Control thread while detached, before configure.
     */
    public void dirtyLog(DirtyLog log, long ringGpa, long deviceAreaGpa) {
        this.log = log;
        split.dirtyLog(log, deviceAreaGpa);
        packed.dirtyLog(log, deviceAreaGpa);
        packed.ringGpa(ringGpa);
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
            if (inOrder && !taken(c)) {
                return null;
            }
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

    /** A ring area the device writes, located from its mapping (not from the address the dirty log uses). */
    private static void observeRingArea(MemorySegment area, GuestMemory memory) {
        GuestWriteObserver o = writeObserver;
        for (int r = 0; o != null && r < memory.regionCount(); r++) {
            MemorySegment region = memory.segment(r);
            long at = area.address() - region.address();
            if (at >= 0 && at + area.byteSize() <= region.byteSize()) {
                o.mayWrite(memory.gpaBase(r) + at, area.byteSize());
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
        if (inOrder) {
            for (int i = 0; i < count && orderCount > 0; i++) {
                orderCount--;
                int slot = orderHead + orderCount;
                orderSlotOf[orderId[slot < orderId.length ? slot : slot - orderId.length]] = -1;
            }
        }
    }

    /** IN_ORDER: chain {@code c} joins the chains waiting to be used in order; false if its id is already there. */
    private boolean taken(DescriptorChain c) {
        int id = c.head();
        if (orderSlotOf[id] >= 0 || orderCount == orderId.length) {
            latchBroken("chain " + id + " made available again before it was used");
            return false;
        }
        int slot = orderHead + orderCount;
        if (slot >= orderId.length) {
            slot -= orderId.length;
        }
        orderId[slot] = id;
        orderQuiet[slot] = c.error() == null && c.writableCount() == 0;
        orderDone[slot] = false;
        orderSlotOf[id] = slot;
        orderCount++;
        return true;
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

    /**
     * Writes a used element for the chain {@code head} names ({@link DescriptorChain#head()}): it
     * becomes visible at {@link #publish()}. Under IN_ORDER, not before every chain taken earlier
     * is completed too. Poller.
     */
    public void complete(int head, long writtenLength) {
        if (broken) {
            return;
        }
        counters.bytesWritten += writtenLength;
        if (!inOrder) {
            ring.complete(head, writtenLength, false);
            return;
        }
        int slot = head >= 0 && head < orderSlotOf.length ? orderSlotOf[head] : -1;
        if (slot < 0) {
            completionRefused(head);
            return;
        }
        orderLength[slot] = writtenLength;
        orderDone[slot] = true;
        while (orderCount > 0 && orderDone[orderHead]) {
            int h = orderHead;
            orderDone[h] = false;
            orderSlotOf[orderId[h]] = -1;
            if (++orderHead == orderId.length) {
                orderHead = 0;
            }
            orderCount--;
            ring.complete(orderId[h], orderLength[h], orderQuiet[h]);
        }
    }

    /** A completion for a chain that is not in flight: a device bug, logged once and otherwise ignored. Poller. */
    void completionRefused(int head) {
        counters.handlerExceptions++;
        if (!completionRefusedLogged) {
            completionRefusedLogged = true;
            LOG.error("queue {}: completion for chain {}, which is not in flight, ignored (further ones only counted)",
                    index, head);
        }
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
        if (coalesceFrames > 0) {
            // The driver's wish is remembered (EVENT_IDX looks only at what this publish moved), and
            // the call goes out once enough entries or time have gathered, or the poller goes idle.
            callOwed |= notify;
            if (!callOwed) {
                counters.notificationsSuppressed++;
                return;
            }
            long now = System.nanoTime();
            if (pendingEntries == 0) {
                pendingSince = now;
            }
            pendingEntries += published;
            if (pendingEntries < coalesceFrames && now - pendingSince < coalesceNanos) {
                counters.notificationsCoalesced++;
                return;
            }
            call();
            return;
        }
        int fd = callFd;
        if (notify && fd >= 0) {
            LibC.eventfdSignal(fd);
            counters.notificationsSent++;
        } else {
            counters.notificationsSuppressed++;
        }
    }

    /**
     * Holds interrupts back until {@code frames} used entries have gathered or {@code usecs}
     * passed since the first of them (0 frames: off, every wanted interrupt goes out at once), like
     * {@code ethtool -C rx-frames/rx-usecs}. The poller sends what is owed before it sleeps, so
     * the last interrupt of a burst is never late by more than that. Control thread, while the
     * queue is detached; or a test.
     */
    public void coalesce(int frames, long usecs) {
        if (frames < 0 || usecs < 0) {
            throw new IllegalArgumentException("coalescing needs frames and usecs >= 0: " + frames + ", " + usecs);
        }
        this.coalesceFrames = frames;
        this.coalesceNanos = usecs * 1000;
        this.pendingEntries = 0;
        this.callOwed = false;
    }

    /**
     * Sends a held-back interrupt: always when {@code due} is false (the poller is about to sleep),
     * else only once its time has come. Poller.
     */
    public void flushCoalesced(boolean due) {
        if (callOwed && (!due || System.nanoTime() - pendingSince >= coalesceNanos)) {
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
        callOwed = false;
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
