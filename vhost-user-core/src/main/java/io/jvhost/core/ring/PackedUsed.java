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
 * The device's side of a packed ring: used descriptors, written in batches (§2.8.21.1). A
 * completion only notes its descriptor (one long in {@link #batch}); {@link #publish} writes the
 * batch in one burst, every descriptor but the first whole (len, id and flags in one 8-byte store),
 * then the first one's flags with a release store, which hands the whole batch to the driver at
 * once; until then the ring is not touched. (A polling driver reads the flags of the batch's first
 * slot all along, so stores into that cache line spread over the batch's work could each take the
 * line back from the driver's core; against DPDK's virtio-user this measured neither faster nor
 * slower than writing each descriptor as its chain completed: perf/RESULTS.md, 2026-12-06.) With
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
     * The batch not published yet, in completion order: per used descriptor its length, buffer id
     * and ring slots (len | id << 32 | slots << 48; slots at most 2^15), the first one at
     * {@link #batchPos} in lap {@link #batchWrap}, each next one where the one before ends. At most
     * one per buffer id in flight, so the queue size bounds it.
     */
    private long[] batch = new long[0];
    private int batched, batchPos, batchWrap;
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
        if (batch.length != size) {
            batch = new long[size];
        }
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

    /** Notes the used descriptor for {@code id} at the used position (written at publish) and moves past {@code slots}. */
    private void write(int id, long writtenLength, int slots) {
        int n = batched++;
        if (n == 0) {
            batchPos = pos;
            batchWrap = wrap;
        }
        batch[n] = (writtenLength & 0xFFFF_FFFFL) | (long) (id & 0xFFFF) << 32 | (long) slots << 48;
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
        int n = batched;
        if (n == 0) {
            return 0;
        }
        long[] entries = batch;
        int at = batchPos, lap = batchWrap;
        long first = (long) at * DESC_SIZE;
        int firstFlags = 0;
        for (int i = 0; i < n; i++) {
            long e = entries[i];
            int len = (int) e;
            int flags = (lap != 0 ? F_AVAIL | F_USED : 0) | (len != 0 ? F_WRITE : 0);
            long d = (long) at * DESC_SIZE;
            if (i == 0) {
                ring.set(LE_INT, d + LEN_OFFSET, len);
                ring.set(LE_SHORT, d + ID_OFFSET, (short) (e >>> 32));
                firstFlags = flags;
            } else {
                ring.set(LE_LONG, d + LEN_OFFSET, (e & 0xFFFF_FFFF_FFFFL) | (long) flags << 48); // len, id, flags at once
            }
            if (log != null) {
                log.mark(ringGpa + d, DESC_SIZE);
            }
            at += (int) (e >>> 48);
            if (at >= size) {
                at -= size;
                lap ^= 1;
            }
        }
        if (inflight != null) {
            inflight.publishing(pos, wrap);
        }
        U16_VH.setRelease(ring, first + FLAGS_OFFSET, (short) firstFlags);
        if (inflight != null) {
            inflight.published(pos, wrap);
        }
        VarHandle.fullFence(); // the driver's event suppression written before our descriptors were seen
        batched = 0;
        publishedFrom = publishedTo;
        publishedTo = PackedLayout.linear(size, pos, wrap);
        int moved = publishedTo - publishedFrom;
        return moved > 0 ? moved : moved + 2 * size;
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
