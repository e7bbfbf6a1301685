package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import static io.jvhost.core.ring.LeLayouts.LE_INT;
import static io.jvhost.core.ring.LeLayouts.LE_LONG;
import static io.jvhost.core.ring.LeLayouts.LE_SHORT;
import static io.jvhost.core.ring.LeLayouts.U16_VH;
import static io.jvhost.core.ring.PackedLayout.DESC_SIZE;
import static io.jvhost.core.ring.PackedLayout.EVENT_DESC;
import static io.jvhost.core.ring.PackedLayout.EVENT_DISABLE;
import static io.jvhost.core.ring.PackedLayout.F_AVAIL;
import static io.jvhost.core.ring.PackedLayout.F_USED;
import static io.jvhost.core.ring.PackedLayout.F_WRITE;
import static io.jvhost.core.ring.PackedLayout.FLAGS_OFFSET;
import static io.jvhost.core.ring.PackedLayout.ID_OFFSET;
import static io.jvhost.core.ring.PackedLayout.LEN_OFFSET;

/**
 * The device's side of a packed ring: used descriptors, written in batches (§2.8.21.1). Each
 * completion writes its used descriptor whole (len, id and flags in one 8-byte store), but the
 * batch's first, whose len and id {@link #publish} writes and then its flags with a release store:
 * the driver reads used descriptors in ring order from that slot, so the whole batch is handed over
 * at once. (Noting the batch in an array and writing it all at publish, as before, cost 2.5 ns more
 * per frame in the receive burst, MergeableRxBench.deliverBurst; against DPDK's virtio-user it had
 * measured neither faster nor slower than writing as chains completed: perf/RESULTS.md.) With
 * IN_ORDER and no inflight log, a run of chains with nothing to write is completed by one used
 * descriptor for its last chain (§2.8.21.2). Whether the driver wants an interrupt for a batch is
 * read from its event suppression structure here too, since it depends only on where the batch
 * ran. Split from {@link PackedRing}, which takes chains, so that each side of the ring reads alone.
 * Poller thread once attached; allocation-free.
 */
final class PackedUsed {
    private MemorySegment ring;
    private MemorySegment driverEvent;
    private int size;
    private boolean eventIdx;
    private boolean inOrder;
    private DirtyLog log;
    /** Guest-physical address of the descriptor ring, for dirty logging of used descriptors. */
    private long ringGpa;
    /** Tracks the used position for recovery; null when the queue has no inflight region. */
    PackedInflightLog inflight;
    /** Where the device writes the next used descriptor, and its wrap counter (0 or 1). */
    int pos, wrap;
    /**
     * The batch not published yet: how many used descriptors, and its first one (at byte offset
     * {@link #firstAt} of the ring; its len and id, and its flags), which is written at publish,
     * flags last. The others are written whole as they complete.
     */
    private int batched;
    private long firstAt, firstTail;
    private int firstFlags;
    /** Linear used positions (0 .. 2 * size - 1) at the last two publishes, for the event check. */
    private int publishedFrom, publishedTo;
    /** IN_ORDER: a run of quiet completions not written yet (count 0: none), its last id and length, and its slots. */
    private int runCount, runId, runSlots;
    private long runLength;

    /** Control thread, while detached: the ring, the driver's event structure and how to log writes. */
    void configure(MemorySegment ring, MemorySegment driverEvent, int size, boolean eventIdx, boolean inOrder,
                   DirtyLog log, long ringGpa) {
        this.ring = ring;
        this.driverEvent = driverEvent;
        this.size = size;
        this.eventIdx = eventIdx;
        this.inOrder = inOrder;
        this.log = log;
        this.ringGpa = ringGpa;
        batched = 0;
        runCount = 0;
    }

    /** Resumes writing used descriptors at {@code pos} with wrap counter {@code wrap}, nothing published since. */
    void resume(int pos, int wrap) {
        this.pos = pos;
        this.wrap = wrap;
        publishedTo = PackedLayout.linear(size, pos, wrap);
        publishedFrom = publishedTo;
    }

    /**
     * After a restart, before anything is used: marks the {@code slots} slots from the used
     * position, those of the chains still in flight, as not used. A backend that died before
     * publishing its last batch may have written used descriptors there already (every one but the
     * batch's first); the driver, once a later publish brings it that far, would take them for
     * completions of chains the new backend is still serving, then see those chains completed twice.
     */
    void hideUnpublished(int slots) {
        int at = pos, lap = wrap;
        for (int i = 0; i < slots; i++) {
            long d = (long) at * DESC_SIZE;
            ring.set(LE_SHORT, d + FLAGS_OFFSET, (short) (lap != 0 ? F_AVAIL : F_USED)); // available in this lap, not used
            if (log != null) {
                log.mark(ringGpa + d, DESC_SIZE);
            }
            if (++at == size) {
                at = 0;
                lap ^= 1;
            }
        }
    }

    /**
     * Chain {@code id}, which took {@code slots} ring slots, is used with {@code writtenLength}
     * bytes; {@code quiet}: nothing written, so under IN_ORDER a later used descriptor may stand for it.
     */
    void complete(int id, long writtenLength, int slots, boolean quiet) {
        if (inOrder && inflight == null) {
            if (quiet) { // wait: the next completion, or the publish, writes the one used descriptor
                runCount++;
                runId = id;
                runLength = writtenLength;
                runSlots += slots;
                return;
            }
            slots += runSlots;
            runCount = 0;
            runSlots = 0;
        }
        write(id, writtenLength, slots);
    }

    /**
     * Writes the used descriptor for {@code id} at the used position, whole (len, id and flags in one
     * 8-byte store), but the batch's first, kept for {@link #publish}; moves past {@code slots}.
     */
    private void write(int id, long writtenLength, int slots) {
        long d = (long) pos * DESC_SIZE;
        long tail = (writtenLength & 0xFFFF_FFFFL) | (long) (id & 0xFFFF) << 32;
        int flags = (wrap != 0 ? F_AVAIL | F_USED : 0) | (writtenLength != 0 ? F_WRITE : 0);
        if (batched++ == 0) {
            firstAt = d;
            firstTail = tail;
            firstFlags = flags;
        } else {
            ring.set(LE_LONG, d + LEN_OFFSET, tail | (long) flags << 48);
            if (log != null) {
                log.mark(ringGpa + d, DESC_SIZE);
            }
        }
        pos += slots;
        if (pos >= size) {
            pos -= size;
            wrap ^= 1;
        }
    }

    /** See {@link Ring#publishUsed}: the batch's first flags with a release store, then a full fence. */
    int publish() {
        expose();
        int to = PackedLayout.linear(size, pos, wrap);
        if (to == publishedTo) {
            return 0;
        }
        VarHandle.fullFence(); // the driver's event suppression written before our descriptors were seen
        publishedFrom = publishedTo;
        publishedTo = to;
        int moved = publishedTo - publishedFrom;
        return moved > 0 ? moved : moved + 2 * size;
    }

    /** See {@link Ring#exposeUsed}: the batch's first flags with a release store; a new batch starts after it. */
    void expose() {
        if (runCount > 0) {
            int slots = runSlots;
            runCount = 0;
            runSlots = 0;
            write(runId, runLength, slots);
        }
        if (batched == 0) {
            return;
        }
        long first = firstAt;
        ring.set(LE_INT, first + LEN_OFFSET, (int) firstTail);
        ring.set(LE_SHORT, first + ID_OFFSET, (short) (firstTail >>> 32));
        if (log != null) {
            log.mark(ringGpa + first, DESC_SIZE);
        }
        if (inflight != null) {
            inflight.publishing(pos, wrap);
        }
        U16_VH.setRelease(ring, first + FLAGS_OFFSET, (short) firstFlags);
        if (inflight != null) {
            inflight.published(pos, wrap);
        }
        batched = 0;
    }

    /** After {@link #publish} returned more than 0: whether the driver's event suppression asks for an interrupt. */
    boolean interruptWanted() {
        int event = driverEvent.get(LE_INT, 0); // one read: off_wrap and flags of the same moment
        int flags = (event >>> 16) & 3;
        if (flags == EVENT_DISABLE) {
            return false;
        }
        if (flags != EVENT_DESC || !eventIdx) {
            return true; // ENABLE, or a value the driver may not use: interrupt rather than lose one
        }
        int offWrap = event & 0xFFFF;
        int eventAt = PackedLayout.linear(size, offWrap & 0x7FFF, offWrap >>> 15);
        int twice = 2 * size;
        // vring_need_event over linear positions modulo two laps: did this batch cross the event position?
        int sinceEvent = Math.floorMod(publishedTo - eventAt - 1, twice);
        int batch = Math.floorMod(publishedTo - publishedFrom, twice);
        return sinceEvent < (batch == 0 ? twice : batch);
    }
}
