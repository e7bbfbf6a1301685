package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A virtqueue's memory layout, the part of a queue that differs between the split ring (virtio 1.2
 * §2.7, {@link SplitRing}) and the packed ring (§2.8): where the driver offers chains, how a chain's
 * descriptors are found, where used elements go, and how either side suppresses notifications.
 * {@link VirtQueue} is the device-facing queue and owns everything else (counters, the broken latch,
 * eventfds, latency); it calls its ring only while not broken, and the ring reports ring corruption
 * through {@link VirtQueue#latchBroken}.
 *
 * <p>The three areas are the ones SET_VRING_ADDR names: descriptor table or ring, driver area
 * (split: avail ring) and device area (split: used ring). Dirty logging of the ring's own writes is
 * the ring's job; logging of buffer writes is the chain's. Poller thread once attached; control
 * thread while detached (configure).
 *
 * <p>Sealed and package-private: with one layout every call from {@link VirtQueue} binds statically
 * (class hierarchy analysis), with two it stays at most bimorphic.
 */
abstract sealed class Ring permits SplitRing, PackedRing {
    private static final Logger LOG = LoggerFactory.getLogger(Ring.class);
    final VirtQueue queue;
    // Configuration, set by the control thread while detached.
    int size;
    GuestMemory memory = GuestMemory.EMPTY;
    boolean eventIdx;
    boolean indirect;
    DirtyLog log;
    /** Guest-physical address of the device area, for dirty logging of the ring's own writes. */
    long deviceAreaGpa;
    /** Set at configure: chains recovered from the inflight log, how many were taken again, and whether the base moved. */
    int resubmitCount, resubmitNext;
    boolean baseCorrected;

    Ring(VirtQueue queue) {
        this.queue = queue;
    }

    /**
     * Points the ring at its areas (already translated and bounds-checked by the caller, or refused
     * here with {@link IllegalArgumentException} before anything changes) and resumes at the vring
     * base {@code base} (SET_VRING_BASE, in the layout's encoding); {@code inflightRegion} (may be
     * null) is the queue's slice of the INFLIGHT_SHMFD region, which the ring tracks in its layout's
     * format and from which requests left by a previous backend are recovered for resubmission.
     * With {@code inOrder} (VIRTIO_F_IN_ORDER) completions arrive in the order chains were taken, and
     * a run of chains with nothing written may be returned by one used element.
     */
    abstract void configure(int size, MemorySegment desc, MemorySegment driverArea, MemorySegment deviceArea,
                            GuestMemory memory, long base, boolean eventIdx, boolean indirect, boolean inOrder,
                            MemorySegment inflightRegion);

    /** Logs the ring's writes to {@code log} (null: not migrating); before {@link #configure}. */
    final void dirtyLog(DirtyLog log, long deviceAreaGpa) {
        this.log = log;
        this.deviceAreaGpa = deviceAreaGpa;
    }

    /**
     * Takes the next chain the driver made available and parses it into {@code chain}
     * ({@link DescriptorChain#error()} null when well-formed). Returns false when there is none, or
     * when the ring is corrupt (then it has latched the queue broken).
     */
    abstract boolean take(DescriptorChain chain);

    /**
     * Takes up to {@code max} chains that are each one buffer, writable or readable as
     * {@code writable} says and long enough, into
     * {@code burst} (ids and translated buffers), stopping before the
     * first that is not, and returns how many. What stopped the burst is left for {@link #take} to
     * judge; only the driver's index moving by more than the ring (the check every read of it gets)
     * latches the queue broken here. Chain {@code k} must hold {@code headroom + lengths[from + k]}
     * bytes. Only without an inflight log and with nothing to resubmit.
     */
    abstract int takeBurst(BufferBurst burst, int max, long headroom, long[] lengths, int from, boolean writable);

    /** Whether {@link #take} would find a chain; may latch the queue broken. */
    abstract boolean hasAvailable();

    /** Gives back the last {@code chains} chains taken and not completed. */
    abstract void rewind(int chains);

    /**
     * Gives back the last {@code count} chains of a burst, {@code ids[from..from + count)}, taken
     * by {@link #takeBurst} and not completed; nothing was taken after them.
     */
    void giveBack(int[] ids, int from, int count) {
        rewind(count);
    }

    /**
     * Writes a used element for chain {@code id} ({@link DescriptorChain#head()}), not yet visible.
     * {@code quiet}: the chain had nothing for the device to write, so with IN_ORDER the used
     * element of a later chain may stand for it.
     */
    abstract void complete(int id, long writtenLength, boolean quiet);

    /**
     * Completes the first {@code n} chains a burst took, {@code ids[i]} with {@code written[i]}
     * bytes, in order, as {@link #complete} would one by one ({@code inOrder}: a chain with nothing
     * written is quiet).
     */
    void completeBurst(int[] ids, long[] written, int n, boolean inOrder) {
        for (int i = 0; i < n; i++) {
            long w = written[i];
            complete(ids[i], w, inOrder && w == 0);
        }
    }

    /**
     * Makes the elements completed since the last call visible with one release store, then a full
     * fence. Returns how many; 0 (and nothing written) when there were none.
     */
    abstract int publishUsed();

    /**
     * Makes the elements completed so far visible to a driver that polls, with a release store and
     * no fence and no interrupt: the next {@link #publishUsed} still counts them, fences, and lets
     * the caller decide on the interrupt. Nothing with an inflight log, whose publish order it keeps.
     */
    abstract void exposeUsed();

    /** After {@link #publishUsed} returned more than 0: whether the driver asked for an interrupt. */
    abstract boolean interruptWanted();

    /** Asks the driver not to kick. */
    abstract void disableNotifications();

    /** Asks the driver to kick for the next chain; the caller fences and re-checks. */
    abstract void enableNotifications();

    /** What GET_VRING_BASE reports, in the layout's encoding: where the device resumes. */
    abstract long base();

    /** Where the device takes the next chain: split the avail index, packed the position | wrap << 15. */
    abstract int availIdx();

    /** The device's used index (packed: position | wrap << 15), published or not. */
    abstract int usedIdx();

    /** At configure, after recovery: {@code chains} left in flight by a previous backend are taken again first. */
    final void resubmitting(int chains) {
        resubmitCount = chains;
        if (chains > 0) {
            LOG.info("queue {}: resubmitting {} requests left in flight by a previous backend", queue.index(), chains);
        }
    }

    /** Chains recovered from the in-flight log and not yet taken again. */
    final int resubmitPending() {
        return resubmitCount - resubmitNext;
    }

    /** Whether {@link #configure} resumed somewhere other than the frontend's base. */
    final boolean baseCorrected() {
        return baseCorrected;
    }
}
