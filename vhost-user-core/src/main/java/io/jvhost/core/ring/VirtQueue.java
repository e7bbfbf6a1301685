package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.metrics.LatencyRecorder;
import io.jvhost.core.metrics.QueueLatency;
import io.jvhost.core.sys.LibC;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

/**
 * One virtqueue as the device sees it: {@link #next()} hands out parsed chains, {@link #complete}
 * and {@link #publish()} return them, and the queue keeps the counters, the broken latch, the
 * eventfds and the latency clock. The memory layout (split or packed ring) is its {@link Ring}'s
 * business; a device never needs to know which one the driver chose.
 *
 * <p>Beside the ring, its parts: with VIRTIO_F_IN_ORDER ({@link #IN_ORDER}) buffers are used in
 * the order they were made available, whatever order the device completes them in
 * ({@link InOrderTracker}); {@link Interrupts} decides which calls go out when (coalescing);
 * {@link Refusals} counts and logs bad input once and signals ring corruption; {@link GuestWrites}
 * is the migration test hook; {@link QueuePosition} tells the control path where the queue stands
 * and resumes (the vring base).
 *
 * <p>The control thread builds and configures a queue while it is detached; once a poller starts
 * it, it belongs to that poller thread, which alone calls {@link #next()}, {@link #complete} and
 * {@link #publish()} until the queue is handed back. Ring corruption latches the queue
 * {@link #isBroken() broken}: it is not touched again until reconfigured, and its err eventfd is
 * written once.
 */
public final class VirtQueue {
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
    private final LatencyRecorder latencyRecorder = latency == null ? null : latency.recorder();
    private final SplitRing split = new SplitRing(this);
    private final PackedRing packed = new PackedRing(this);
    private final Interrupts interrupts = new Interrupts(counters);
    private final InOrderTracker order = new InOrderTracker();
    private final Refusals refusals;
    private final QueuePosition position = new QueuePosition(this);

    // Configuration, set by the control thread while detached.
    private Ring ring = split;
    private volatile int pollerWakeFd = -1;
    private DescriptorChain chain;
    private MemorySegment inflightRegion;
    private DirtyLog log;
    private boolean broken;
    private boolean inOrder;
    /** The device completes chains in the order it takes them ({@link #completesInOrder}); kept across configure. */
    private boolean deviceInOrder;
    /** IN_ORDER for a device that may complete out of order: through {@link #order}, else quiet chains are told at complete. */
    private boolean tracked;
    /** Buffers are taken on the device's demand ({@link #onDemand}); whether it ran out of them, and its back-off. */
    private Demand demand = new Demand();

    public VirtQueue(int index) {
        this.index = index;
        this.refusals = new Refusals(index, counters);
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

    /** Latency and batch histograms, or null when {@code -Djvhost.latency=false}. */
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
            latencyRecorder.workSeen();
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
     * The device completes chains in the order it took them (rewinding only the last ones), as
     * virtio-net does: under IN_ORDER they skip the reordering tracker. Before the queue takes chains.
     */
    public void completesInOrder(boolean inTakeOrder) {
        deviceInOrder = inTakeOrder;
        tracked = inOrder && !inTakeOrder;
        if (tracked) {
            order.reset(ring.size);
        }
    }

    /** Where the queue stands in its ring and where it resumes: positions, the vring base. */
    public QueuePosition position() {
        return position;
    }

    /** The ring in the layout the driver chose, for {@link QueuePosition}. */
    Ring ring() {
        return ring;
    }

    /**
     * Points the queue at its areas, as SET_VRING_ADDR names them (descriptor table or ring, driver
     * area, device area; already translated and bounds-checked by the caller), in the layout and
     * with the ring features {@code options} says ({@link #EVENT_IDX}, {@link #INDIRECT},
     * {@link #PACKED}, {@link #IN_ORDER}), and resumes at {@code base} as SET_VRING_BASE gave it
     * (see {@link QueuePosition#base()}). A split ring's used index comes from the ring itself,
     * which the driver owns across device restarts; a packed ring's from the base, or from the
     * inflight region when it tracked requests before. Refuses a size or base that cannot be with
     * {@link IllegalArgumentException}, before anything changes. Control thread, while detached.
     */
    public void configure(int size, MemorySegment desc, MemorySegment driverArea, MemorySegment deviceArea,
                          GuestMemory memory, long base, int options, int errFd) {
        boolean isPacked = (options & PACKED) != 0;
        Ring r = isPacked ? packed : split; // each checks the size and areas for its layout
        r.configure(size, desc, driverArea, deviceArea, memory, base, (options & EVENT_IDX) != 0,
                (options & INDIRECT) != 0, (options & IN_ORDER) != 0, inflightRegion);
        ring = r;
        if (chain == null || chain.capacity() != size) {
            chain = new DescriptorChain(size);
        }
        chain.log = log;
        inOrder = (options & IN_ORDER) != 0;
        tracked = inOrder && !deviceInOrder;
        if (tracked) {
            order.reset(size);
        }
        refusals.errFd(errFd);
        this.broken = false;
        if (log != null) {
            GuestWrites.ringAreas(isPacked, desc, deviceArea, memory);
        }
    }

    /**
     * Tracks in-flight chains in {@code region} (one queue's slice of INFLIGHT_SHMFD, laid out as
     * the ring's layout wants: {@link InflightLog} or {@link PackedInflightLog}), or stops tracking
     * with null. Takes effect, with recovery, at the next {@link #configure}. Control thread, while
     * detached.
     */
    public void inflight(MemorySegment region) {
        this.inflightRegion = region;
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

    /**
     * Buffers of this queue are taken on the device's demand (a receive queue): posted buffers are
     * no work, and {@link #enableNotifications()} asks the driver for a kick only once the device
     * ran out of them (a {@link #next()} that found none, or a {@link #rewind}). Poller, at attach.
     */
    public void onDemand(boolean onDemand) {
        demand.reset(onDemand);
    }

    /** Tests: the back-off of a starved queue on their own clock ({@link Demand}); then {@link #onDemand}. */
    void demand(Demand demand) {
        this.demand = demand;
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
        interrupts.callFd(fd);
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
        if (demand.backingOff()) {
            return null; // ran out a moment ago: the driver is still refilling (Demand)
        }
        while (!broken && ring.take(c)) {
            if (tracked && !order.taken(c)) {
                latchBroken("chain " + c.head() + " made available again before it was used");
                return null;
            }
            ChainError error = c.error();
            if (error == null) {
                if (log != null) {
                    GuestWrites.chain(c);
                }
                counters.chains++;
                counters.descriptors += c.count();
                counters.bytesRead += c.readableLength();
                demand.found();
                return c;
            }
            refusals.malformed(c.head(), error);
            complete(c.head(), 0);
        }
        demand.ranOut();
        return null;
    }

    /**
     * Gives back the last {@code count} chains taken with {@link #next()} and not completed, so
     * they are taken again later (e.g. a mergeable receive that ran out of buffers mid-frame).
     * Only valid when no malformed chain was skipped meanwhile (its completion cannot be undone):
     * compare {@link QueueCounters#chainsRejected()} before and after. Poller.
     */
    public void rewind(int count) {
        ring.rewind(count);
        demand.gaveBack(count);
        counters.chains -= count;
        if (tracked) {
            order.rewind(count);
        }
    }

    /** Whether a {@link BufferBurst} may take chains: the plain case, nothing logged, tracked or resubmitted, no back-off. */
    boolean burstable() {
        return !broken && !demand.backingOff() && log == null && !tracked && ring.resubmitPending() == 0;
    }

    /** A {@link BufferBurst} took {@code n} chains ({@code read} bytes to read; 0: next() goes on), or gave {@code -n} back. */
    void tookBurst(int n, long read) {
        counters.chains += n;
        demand.gaveBack(-n); // nothing unless chains were given back
        if (n > 0) {
            counters.descriptors += n;
            counters.bytesRead += read;
            demand.found();
        }
    }

    /** Counts a device-level refusal of a well-formed chain the same way as a malformed one. Poller. */
    public void countRejected(ChainError error) {
        refusals.count(error);
    }

    /** Writes a used element for {@code chain}; it becomes visible at {@link #publish()}. Poller. */
    public void complete(DescriptorChain chain, long writtenLength) {
        complete(chain.head(), writtenLength, inOrder && !tracked && chain.error() == null && chain.writableCount() == 0);
    }

    /**
     * Writes a used element for the chain {@code head} names ({@link DescriptorChain#head()}): it
     * becomes visible at {@link #publish()}. Under IN_ORDER, not before every chain taken earlier
     * is completed too. Poller.
     */
    public void complete(int head, long writtenLength) {
        complete(head, writtenLength, false);
    }

    private void complete(int head, long writtenLength, boolean quiet) {
        if (broken) {
            return;
        }
        counters.bytesWritten += writtenLength;
        if (!tracked) {
            ring.complete(head, writtenLength, quiet);
            return;
        }
        if (!order.complete(head, writtenLength, ring)) {
            completionRefused(head);
        }
    }

    /** A completion for a chain that is not in flight: a device bug, logged once and otherwise ignored. Poller. */
    void completionRefused(int head) {
        refusals.completion(head);
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
            latencyRecorder.published(published);
        }
        interrupts.published(published, notify);
    }

    /** When the driver is interrupted: coalescing (control thread, detached) and held-back calls (poller). */
    public Interrupts interrupts() {
        return interrupts;
    }

    /** Asks the driver not to kick while the poller is busy with this queue. Poller. */
    public void disableNotifications() {
        if (!broken) {
            ring.disableNotifications();
        }
    }

    /**
     * Asks the driver to kick for the next buffer, then re-checks the ring so a buffer made
     * available in between is not missed. Returns true when there is work after all. An
     * {@link #onDemand} queue that has not run out of buffers asks for nothing and has no work. Poller.
     */
    public boolean enableNotifications() {
        if (broken || demand.stocked()) {
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
        refusals.ringCorrupt(why);
    }

    @Override
    public String toString() {
        return "vq" + index + "(size " + ring.size + ", avail " + ring.availIdx() + ", used " + ring.usedIdx()
                + (broken ? ", BROKEN" : "") + ")";
    }
}
