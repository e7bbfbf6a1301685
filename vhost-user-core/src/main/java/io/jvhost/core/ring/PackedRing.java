package io.jvhost.core.ring;

import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.metrics.QueueLatency;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static io.jvhost.core.ring.LeLayouts.LE_LONG;
import static io.jvhost.core.ring.LeLayouts.U16_VH;
import static io.jvhost.core.ring.LeLayouts.U32_VH;
import static io.jvhost.core.ring.PackedLayout.DESC_SIZE;
import static io.jvhost.core.ring.PackedLayout.EVENT_DESC;
import static io.jvhost.core.ring.PackedLayout.EVENT_DISABLE;
import static io.jvhost.core.ring.PackedLayout.EVENT_ENABLE;
import static io.jvhost.core.ring.PackedLayout.F_NEXT;
import static io.jvhost.core.ring.PackedLayout.FLAGS_OFFSET;
import static io.jvhost.core.ring.PackedLayout.LEN_OFFSET;
import static io.jvhost.core.ring.PackedLayout.isAvailable;

/**
 * The packed virtqueue layout (virtio 1.2 §2.8): one ring of 16-byte descriptors {addr, len, id,
 * flags} that the driver makes available and the device overwrites with used descriptors, each side
 * telling laps apart by a wrap counter (AVAIL and USED flag bits), and two event suppression
 * structures {off_wrap, flags}: the driver's (may the device interrupt) and the device's (may the
 * driver kick).
 *
 * <p>Taking a chain reads each of its ring descriptors once, the first with an acquire; every later
 * one must carry the same lap's AVAIL/USED bits. Its buffer id (in the last descriptor) names it from
 * then on: ids are below the queue size and unique among the chains in flight, and the chain's slot
 * count is remembered per id, because the used descriptor for it skips that many slots. Used
 * descriptors go out in batches ({@link PackedUsed}); the format itself is {@link PackedLayout}.
 *
 * <p>A driver out of step with the device (a chain running into slots not made available in its lap,
 * a chain longer than the ring, an id out of range or already in flight) latches the queue broken;
 * a chain that is well formed as far as the ring goes but names bad buffers is completed empty, as
 * with the split ring. Poller thread once attached.
 */
final class PackedRing extends Ring {
    private static final Logger LOG = LoggerFactory.getLogger(PackedRing.class);

    final PackedUsed used = new PackedUsed();
    MemorySegment ring;
    private MemorySegment deviceEvent;
    /** Guest-physical address of the descriptor ring, for dirty logging of used descriptors. */
    private long ringGpa;
    private boolean inOrder;
    PackedInflightLog inflight;
    private MemorySegment inflightRegion;

    /** Where the device takes the next chain, and its wrap counter (0 or 1); the used side is {@link #used}'s. */
    int availPos, availWrap;
    /** Per buffer id: its slots in the ring while in flight (0: not in flight), its inflight-log entry. */
    int[] slotsOf = new int[0];
    private int[] entryOf = new int[0];
    /** Per take, newest last: the avail position before it (pos | wrap << 15, or -1 for a resubmission) and the id. */
    private int[] takenFrom = new int[0];
    private int[] takenId = new int[0];
    private int takenNext;
    /** After a rewind: the avail position (pos | wrap << 15) whose descriptor would be new work; -1 when not starved. */
    int starvedAt = -1;
    boolean availableSeen;
    // After a restart: the chains in flight in the inflight log, resubmitted first, in order.
    private int[] resubmit = new int[0];
    /** The avail position right after recovery: where taking from the ring starts once resubmission is done. */
    private int recoveredAvail;

    PackedRing(VirtQueue queue) {
        super(queue);
    }

    @Override
    void configure(int size, MemorySegment desc, MemorySegment driverArea, MemorySegment deviceArea, GuestMemory memory,
                   long base, boolean eventIdx, boolean indirect, boolean inOrder, MemorySegment inflightRegion) {
        PackedLayout.checkConfig(size, desc, driverArea, deviceArea, base);
        this.size = size;
        this.ring = desc;
        this.deviceEvent = deviceArea;
        this.memory = memory;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
        this.inOrder = inOrder;
        if (slotsOf.length != size) {
            slotsOf = new int[size];
            entryOf = new int[size];
            takenFrom = new int[size];
            takenId = new int[size];
            resubmit = new int[size];
        } else {
            Arrays.fill(slotsOf, 0);
        }
        used.configure(desc, driverArea, size, eventIdx, inOrder, log, ringGpa);
        resume((base >>> 16) == 0 ? base | base << 16 : base); // no used half (DPDK's frontend): the device had caught up
        takenNext = 0;
        starvedAt = -1;
        availableSeen = false;
        resubmitCount = 0;
        resubmitNext = 0;
        baseCorrected = false;
        if (inflightRegion == null) {
            inflight = null;
            this.inflightRegion = null;
        } else {
            if (inflight == null || this.inflightRegion != inflightRegion) {
                inflight = new PackedInflightLog(inflightRegion, size);
                this.inflightRegion = inflightRegion;
            }
            recover();
        }
        used.inflight = inflight;
    }

    /** Sets both positions from a vring base ({@link PackedLayout#base}), nothing published since. */
    private void resume(long base) {
        availPos = (int) (base & 0x7FFF);
        availWrap = (int) (base >>> 15) & 1;
        used.resume((int) (base >>> 16) & 0x7FFF, (int) (base >>> 31) & 1);
    }

    private void recover() {
        PackedInflightLog.Recovery r = inflight.recover(ring, resubmit, used.pos, used.wrap);
        if (inflight.failed()) {
            inflight = null;
            return;
        }
        if (!r.used()) {
            return; // a fresh region: the frontend's base is the truth
        }
        long resumed = r.base(size); // avail: what is used plus what is still in flight
        if (resumed != base()) {
            LOG.warn("queue {}: frontend resumes the packed ring at avail {}/{} used {}/{}, the inflight region at"
                    + " used {}/{} with {} chains ({} descriptors) in flight; resuming as the region says",
                    queue.index(), availPos, availWrap, used.pos, used.wrap, r.usedPos(), r.usedWrap(), r.chains(), r.slots());
            baseCorrected = true;
        }
        resume(resumed);
        used.hideUnpublished(r.slots());
        recoveredAvail = availIdx();
        resubmitting(r.chains());
    }

    @Override
    long base() {
        return PackedLayout.base(availPos, availWrap, used.pos, used.wrap);
    }

    @Override
    int availIdx() {
        return availPos | availWrap << 15;
    }

    @Override
    int usedIdx() {
        return used.pos | used.wrap << 15;
    }

    private int flagsAcquire(int slot) {
        return Short.toUnsignedInt((short) U16_VH.getAcquire(ring, (long) slot * DESC_SIZE + FLAGS_OFFSET));
    }

    @Override
    boolean hasAvailable() {
        if (resubmitNext < resubmitCount) {
            return true;
        }
        if (starvedAt >= 0) {
            if (!isAvailable(flagsAcquire(starvedAt & 0x7FFF), starvedAt >>> 15)) {
                return false;
            }
            starvedAt = -1; // the driver added buffers: worth another try
        }
        boolean available = isAvailable(flagsAcquire(availPos), availWrap);
        if (QueueLatency.ENABLED && available && !availableSeen) {
            queue.workSeen(); // busy-polling has no kick: new buffers start the clock
        }
        availableSeen = available;
        return available;
    }

    @Override
    boolean take(DescriptorChain chain) {
        if (resubmitNext < resubmitCount) {
            return takeResubmitted(chain);
        }
        int pos = availPos, wrap = availWrap;
        int flags = flagsAcquire(pos);
        if (!isAvailable(flags, wrap)) {
            return false;
        }
        chain.begin(0, memory);
        PackedInflightLog log = inflight;
        if (log != null) {
            log.begin();
        }
        int slots = 0;
        int id;
        while (true) {
            long d = (long) pos * DESC_SIZE;
            long tail = ring.get(LE_LONG, d + LEN_OFFSET); // len, id and flags at once; plain: after the acquire of the head
            if (slots > 0) {
                flags = (int) (tail >>> 48);
                if (!isAvailable(flags, wrap)) {
                    queue.latchBroken("descriptor " + slots + " of the chain at slot " + availPos
                            + " was not made available (slot " + pos + ", flags 0x" + Integer.toHexString(flags) + ")");
                    return false;
                }
            }
            long addr = ring.get(LE_LONG, d);
            int len = (int) tail;
            id = (int) (tail >>> 32) & 0xFFFF;
            slots++;
            if (log != null) {
                log.add(addr, len, id, flags);
            }
            if (chain.error() == null) {
                PackedLayout.addBuffer(chain, memory, indirect, addr, len, flags);
            }
            if (++pos == size) {
                pos = 0;
                wrap ^= 1;
            }
            if ((flags & F_NEXT) == 0) {
                break;
            }
            if (slots == size) {
                queue.latchBroken("chain at slot " + availPos + " longer than the ring of " + size);
                return false;
            }
        }
        if (id >= size) {
            queue.latchBroken("buffer id " + id + " out of range for size " + size + " (chain at slot " + availPos + ")");
            return false;
        }
        if (slotsOf[id] != 0) {
            queue.latchBroken("buffer id " + id + " made available again before it was used (chain at slot " + availPos + ")");
            return false;
        }
        taken(id, slots, log == null ? -1 : log.end(), availPos | availWrap << 15);
        availPos = pos;
        availWrap = wrap;
        availableSeen = false;
        starvedAt = -1; // taken again after a rewind: the device event must not name the old position
        chain.head(id);
        return true;
    }

    /** Notes chain {@code id} in flight: its ring slots, inflight entry and where it was taken from (for rewind). */
    private void taken(int id, int slots, int entry, int from) {
        takenFrom[takenNext] = from;
        takenId[takenNext] = id;
        takenNext = takenNext + 1 == size ? 0 : takenNext + 1;
        slotsOf[id] = slots;
        entryOf[id] = entry;
    }

    @Override
    int takeBurst(BufferBurst b, int max, long headroom, long[] lengths, int from, boolean writable) {
        return PackedBursts.take(this, b, max, headroom, lengths, from, writable);
    }

    /** A chain left in flight by a previous backend, from the inflight log's copy of its descriptors. */
    private boolean takeResubmitted(DescriptorChain chain) {
        int entry = resubmit[resubmitNext++];
        int id = inflight.readChain(entry, chain, memory, indirect);
        int slots = inflight.chainLength(entry);
        if (id < 0 || id >= size || slotsOf[id] != 0 || slots < 1) {
            queue.latchBroken("inflight entry " + entry + (id < 0 ? " links outside the region"
                    : " names buffer id " + id + ", out of range or in flight twice, or no descriptors"));
            return false;
        }
        taken(id, slots, entry, -1 - (resubmitNext - 1));
        chain.head(id);
        return true;
    }

    @Override
    void rewind(int chains) {
        if (chains <= 0) {
            return;
        }
        int from = 0;
        int at = takenNext;
        for (int i = 0; i < chains; i++) {
            if (--at < 0) {
                at = size - 1;
            }
            int id = takenId[at];
            slotsOf[id] = 0;
            from = takenFrom[at];
            if (from >= 0 && inflight != null) {
                inflight.untaken(entryOf[id]); // resubmitted chains stay in flight
            }
        }
        takenNext = at;
        starvedAt = availPos | availWrap << 15; // what is available is not enough: only new buffers count as work
        if (from >= 0) {
            availPos = from & 0x7FFF;
            availWrap = from >>> 15;
        } else {
            resubmitNext = -1 - from;
            availPos = recoveredAvail & 0x7FFF;
            availWrap = recoveredAvail >>> 15;
        }
        availableSeen = false;
    }

    @Override
    void giveBack(int[] ids, int from, int count) {
        PackedBursts.giveBack(this, ids, from, count);
    }

    @Override
    void completeBurst(int[] ids, long[] written, int n, boolean inOrder) {
        PackedBursts.complete(this, ids, written, n, inOrder);
    }

    @Override
    void complete(int id, long writtenLength, boolean quiet) {
        int slots;
        if (id < 0 || id >= size || (slots = slotsOf[id]) == 0) {
            queue.completionRefused(id);
            return;
        }
        slotsOf[id] = 0;
        if (inflight != null) {
            inflight.completed(entryOf[id]);
        }
        used.complete(id, writtenLength, slots, quiet);
    }

    @Override
    int publishUsed() {
        return used.publish();
    }

    @Override
    void exposeUsed() {
        if (inflight == null) {
            used.expose();
        }
    }

    @Override
    boolean interruptWanted() {
        return used.interruptWanted();
    }

    @Override
    void disableNotifications() {
        U32_VH.setRelease(deviceEvent, 0L, EVENT_DISABLE << 16);
        logDeviceEvent();
    }

    @Override
    void enableNotifications() {
        if (eventIdx) {
            // Kick me when the descriptor at this position is made available; starved: beyond what was there.
            int at = starvedAt >= 0 ? starvedAt : availPos | availWrap << 15;
            U32_VH.setRelease(deviceEvent, 0L, EVENT_DESC << 16 | at);
        } else {
            U32_VH.setRelease(deviceEvent, 0L, EVENT_ENABLE << 16);
        }
        logDeviceEvent();
    }

    private void logDeviceEvent() {
        if (log != null) {
            log.mark(deviceAreaGpa, 4);
        }
    }

    /** Where the descriptor ring is in guest-physical memory, for logging used descriptors; with {@link #dirtyLog}. */
    void ringGpa(long gpa) {
        this.ringGpa = gpa;
    }

    @Override
    public String toString() {
        return "packed(size " + size + ", avail " + availPos + "/" + availWrap + ", used " + used.pos + "/" + used.wrap + ")";
    }
}
