package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import static io.jvhost.core.ring.LeLayouts.LE_INT;
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
 * The device's side of a packed ring: used descriptors, written in batches (§2.8.21.1). Every one
 * but the batch's first is written with its flags as it is completed, and {@link #publish} then
 * writes the first one's flags with a release store, which hands the whole batch to the driver at
 * once. With IN_ORDER and no inflight log, a run of chains with nothing to write is completed by one
 * used descriptor for its last chain (§2.8.21.2). Whether the driver wants an interrupt for a batch
 * is read from its event suppression structure here too, since it depends only on where the batch
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
    /** The first used descriptor of the batch being written: its slot (-1: none yet) and flags. */
    private int batchSlot = -1;
    private int batchFlags;
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
        batchSlot = -1;
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

    /** Writes the used descriptor for {@code id} at the used position and moves past {@code slots}. */
    private void write(int id, long writtenLength, int slots) {
        int slot = pos;
        long d = (long) slot * DESC_SIZE;
        ring.set(LE_INT, d + LEN_OFFSET, (int) writtenLength);
        ring.set(LE_SHORT, d + ID_OFFSET, (short) id);
        int flags = (wrap != 0 ? F_AVAIL | F_USED : 0) | (writtenLength != 0 ? F_WRITE : 0);
        if (batchSlot < 0) {
            batchSlot = slot; // its flags go out last, with the release store that publishes the batch
            batchFlags = flags;
        } else {
            ring.set(LE_SHORT, d + FLAGS_OFFSET, (short) flags);
        }
        if (log != null) {
            log.mark(ringGpa + d, DESC_SIZE);
        }
        pos += slots;
        if (pos >= size) {
            pos -= size;
            wrap ^= 1;
        }
    }

    /** See {@link Ring#publishUsed}: the batch's first flags with a release store, then a full fence. */
    int publish() {
        if (runCount > 0) {
            int slots = runSlots;
            runCount = 0;
            runSlots = 0;
            write(runId, runLength, slots);
        }
        if (batchSlot < 0) {
            return 0;
        }
        if (inflight != null) {
            inflight.publishing(pos, wrap);
        }
        U16_VH.setRelease(ring, (long) batchSlot * DESC_SIZE + FLAGS_OFFSET, (short) batchFlags);
        if (inflight != null) {
            inflight.published(pos, wrap);
        }
        VarHandle.fullFence(); // the driver's event suppression written before our descriptors were seen
        batchSlot = -1;
        publishedFrom = publishedTo;
        publishedTo = PackedLayout.linear(size, pos, wrap);
        int n = publishedTo - publishedFrom;
        return n > 0 ? n : n + 2 * size;
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
