package io.jvhost.core.ring;

import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.metrics.QueueLatency;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;
import static java.nio.ByteOrder.LITTLE_ENDIAN;

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
 * descriptors go out in batches: every one but the batch's first is written with its flags as it is
 * completed, and {@link #publishUsed} then writes the first one's flags with a release store, which
 * hands the whole batch to the driver at once (§2.8.21.1). With IN_ORDER a run of chains with nothing
 * to write is completed by one used descriptor for its last chain (§2.8.21.2).
 *
 * <p>A driver out of step with the device (a chain running into slots not made available in its lap,
 * a chain longer than the ring, an id out of range or already in flight) latches the queue broken;
 * a chain that is well formed as far as the ring goes but names bad buffers is completed empty, as
 * with the split ring. Poller thread once attached.
 */
final class PackedRing extends Ring {
    private static final Logger LOG = LoggerFactory.getLogger(PackedRing.class);
    static final VarHandle U16_VH = JAVA_SHORT.withOrder(LITTLE_ENDIAN).varHandle();
    static final VarHandle U32_VH = JAVA_INT.withOrder(LITTLE_ENDIAN).varHandle();
    static final ValueLayout.OfShort LE_SHORT = JAVA_SHORT.withOrder(LITTLE_ENDIAN);
    static final ValueLayout.OfInt LE_INT = JAVA_INT.withOrder(LITTLE_ENDIAN);
    static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG.withOrder(LITTLE_ENDIAN);
    static final int DESC_SIZE = 16, LEN_OFFSET = 8, ID_OFFSET = 12, FLAGS_OFFSET = 14;
    static final int F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4, F_AVAIL = 1 << 7, F_USED = 1 << 15;
    /** Event suppression flags (§2.8.10). */
    static final int EVENT_ENABLE = 0, EVENT_DISABLE = 1, EVENT_DESC = 2;
    /** The largest packed queue: positions and wrap counter share 16 bits. */
    static final int MAX_SIZE = 1 << 15;

    private MemorySegment ring;
    private MemorySegment driverEvent;
    private MemorySegment deviceEvent;
    /** Guest-physical address of the descriptor ring, for dirty logging of used descriptors. */
    private long ringGpa;
    private boolean inOrder;
    private PackedInflightLog inflight;
    private MemorySegment inflightRegion;

    // Where the device takes the next chain, and writes the next used descriptor; wrap counters 0 or 1.
    private int availPos, availWrap;
    private int usedPos, usedWrap;
    /** Per buffer id: whether in flight, its slots in the ring, its inflight-log entry. */
    private boolean[] inUse = new boolean[0];
    private int[] slotsOf = new int[0];
    private int[] entryOf = new int[0];
    /** Per take, newest last: the avail position before it (pos | wrap << 15, or -1 for a resubmission) and the id. */
    private int[] takenFrom = new int[0];
    private int[] takenId = new int[0];
    private int takenNext;
    /** The first used descriptor of the batch being written: its slot (-1: none yet) and flags. */
    private int batchSlot = -1;
    private int batchFlags;
    /** Linear used positions (0 .. 2 * size - 1) at the last two publishes, for the event check. */
    private int publishedFrom, publishedTo;
    /** IN_ORDER: a run of quiet completions not written yet (count 0: none), its last id and length, and its slots. */
    private int runCount, runId, runSlots;
    private long runLength;
    /** After a rewind: the avail position (pos | wrap << 15) whose descriptor would be new work; -1 when not starved. */
    private int starvedAt = -1;
    private boolean availableSeen;
    // After a restart: the chains in flight in the inflight log, resubmitted first, in order.
    private int[] resubmit = new int[0];
    private int resubmitCount, resubmitNext;
    /** The avail position right after recovery: where taking from the ring starts once resubmission is done. */
    private int recoveredAvail;
    private boolean baseCorrected;

    PackedRing(VirtQueue queue) {
        super(queue);
    }

    /** Whether descriptor flags say "made available in the lap with wrap counter {@code wrap}". */
    static boolean isAvailable(int flags, int wrap) {
        return ((flags & F_AVAIL) != 0) == (wrap != 0) && ((flags & F_USED) != 0) != (wrap != 0);
    }

    /** The vhost-user packed vring base (§ SET_VRING_BASE): avail position and wrap in the low half, used in the high. */
    static long base(int availPos, int availWrap, int usedPos, int usedWrap) {
        return (availPos | (long) availWrap << 15) | (usedPos | (long) usedWrap << 15) << 16;
    }

    @Override
    void configure(int size, MemorySegment desc, MemorySegment driverArea, MemorySegment deviceArea, GuestMemory memory,
                   long base, boolean eventIdx, boolean indirect, boolean inOrder, MemorySegment inflightRegion) {
        if (size < 1 || size > MAX_SIZE) {
            throw new IllegalArgumentException("packed queue size " + size);
        }
        if (desc.byteSize() < (long) DESC_SIZE * size || driverArea.byteSize() < 4 || deviceArea.byteSize() < 4) {
            throw new IllegalArgumentException("packed ring areas smaller than the queue");
        }
        String problem = baseProblem(size, base);
        if (problem != null) {
            throw new IllegalArgumentException(problem);
        }
        this.size = size;
        this.ring = desc;
        this.driverEvent = driverArea;
        this.deviceEvent = deviceArea;
        this.memory = memory;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
        this.inOrder = inOrder;
        if (inUse.length != size) {
            inUse = new boolean[size];
            slotsOf = new int[size];
            entryOf = new int[size];
            takenFrom = new int[size];
            takenId = new int[size];
            resubmit = new int[size];
        } else {
            java.util.Arrays.fill(inUse, false);
        }
        availPos = (int) (base & 0x7FFF);
        availWrap = (int) (base >>> 15) & 1;
        if ((base >>> 16) == 0) { // no used half (DPDK's frontend): the device had caught up
            usedPos = availPos;
            usedWrap = availWrap;
        } else {
            usedPos = (int) (base >>> 16) & 0x7FFF;
            usedWrap = (int) (base >>> 31) & 1;
        }
        takenNext = 0;
        batchSlot = -1;
        runCount = 0;
        starvedAt = -1;
        availableSeen = false;
        resubmitCount = 0;
        resubmitNext = 0;
        baseCorrected = false;
        publishedTo = linear(usedPos, usedWrap);
        publishedFrom = publishedTo;
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
    }

    /**
     * Why {@code base} (a SET_VRING_BASE value for a packed ring) cannot be a position in a ring of
     * {@code size}, or null when it can: positions below the size, and used at most a ring behind avail.
     */
    static String baseProblem(int size, long base) {
        if (base < 0 || base > 0xFFFF_FFFFL) {
            return "packed vring base 0x" + Long.toHexString(base) + " beyond 32 bits";
        }
        int avail = (int) (base & 0x7FFF);
        if (avail >= size) {
            return "packed vring base: avail position " + avail + " not below the queue size " + size;
        }
        if ((base >>> 16) != 0) {
            int used = (int) (base >>> 16) & 0x7FFF;
            if (used >= size) {
                return "packed vring base: used position " + used + " not below the queue size " + size;
            }
            int behind = Math.floorMod(linear(size, avail, (int) (base >>> 15) & 1)
                    - linear(size, used, (int) (base >>> 31) & 1), 2 * size);
            if (behind > size) {
                return "packed vring base: used position " + used + " more than a ring behind avail " + avail;
            }
        }
        return null;
    }

    private static int linear(int size, int pos, int wrap) {
        return wrap != 0 ? pos : pos + size;
    }

    /** A position and wrap counter as one number in [0, 2 * size): laps with wrap 1 first. */
    private int linear(int pos, int wrap) {
        return wrap != 0 ? pos : pos + size;
    }

    private void recover() {
        PackedInflightLog log = inflight;
        PackedInflightLog.Recovery r = log.recover(ring, resubmit, usedPos, usedWrap);
        if (log.failed()) {
            inflight = null;
            return;
        }
        if (!r.used()) {
            return; // a fresh region: the frontend's base is the truth
        }
        int pos = r.usedPos() + r.slots(), wrap = r.usedWrap();
        if (pos >= size) {
            pos -= size;
            wrap ^= 1;
        }
        if (pos != availPos || wrap != availWrap || r.usedPos() != usedPos || r.usedWrap() != usedWrap) {
            LOG.warn("queue {}: frontend resumes the packed ring at avail {}/{} used {}/{}, the inflight region at"
                    + " used {}/{} with {} chains ({} descriptors) in flight; resuming as the region says",
                    queue.index(), availPos, availWrap, usedPos, usedWrap, r.usedPos(), r.usedWrap(), r.chains(), r.slots());
            baseCorrected = true;
        }
        availPos = pos;
        availWrap = wrap;
        usedPos = r.usedPos();
        usedWrap = r.usedWrap();
        publishedTo = linear(usedPos, usedWrap);
        publishedFrom = publishedTo;
        recoveredAvail = availPos | availWrap << 15;
        resubmitCount = r.chains();
        if (resubmitCount > 0) {
            LOG.info("queue {}: resubmitting {} requests left in flight by a previous backend", queue.index(), resubmitCount);
        }
    }

    @Override
    boolean baseCorrected() {
        return baseCorrected;
    }

    @Override
    int resubmitPending() {
        return resubmitCount - resubmitNext;
    }

    @Override
    long base() {
        return base(availPos, availWrap, usedPos, usedWrap);
    }

    @Override
    int availIdx() {
        return availPos | availWrap << 15;
    }

    @Override
    int usedIdx() {
        return usedPos | usedWrap << 15;
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
            if (slots > 0) {
                flags = Short.toUnsignedInt(ring.get(LE_SHORT, d + FLAGS_OFFSET)); // plain: after the acquire of the head
                if (!isAvailable(flags, wrap)) {
                    queue.latchBroken("descriptor " + slots + " of the chain at slot " + availPos
                            + " was not made available (slot " + pos + ", flags 0x" + Integer.toHexString(flags) + ")");
                    return false;
                }
            }
            long addr = ring.get(LE_LONG, d);
            int len = ring.get(LE_INT, d + LEN_OFFSET);
            id = Short.toUnsignedInt(ring.get(LE_SHORT, d + ID_OFFSET));
            slots++;
            if (log != null) {
                log.add(addr, len, id, flags);
            }
            if (chain.error() == null) {
                addBuffer(chain, addr, len, flags);
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
        if (inUse[id]) {
            queue.latchBroken("buffer id " + id + " made available again before it was used (chain at slot " + availPos + ")");
            return false;
        }
        int entry = log == null ? -1 : log.end();
        takenFrom[takenNext] = availPos | availWrap << 15;
        takenId[takenNext] = id;
        if (++takenNext == size) {
            takenNext = 0;
        }
        availPos = pos;
        availWrap = wrap;
        availableSeen = false;
        inUse[id] = true;
        slotsOf[id] = slots;
        entryOf[id] = entry;
        chain.head(id);
        return true;
    }

    /** A chain left in flight by a previous backend, from the inflight log's copy of its descriptors. */
    private boolean takeResubmitted(DescriptorChain chain) {
        PackedInflightLog log = inflight;
        int entry = resubmit[resubmitNext++];
        int num = log.chainLength(entry);
        chain.begin(0, memory);
        int e = entry;
        int id = 0;
        for (int i = 0; i < num; i++) {
            if (i > 0 && (e = log.nextEntry(e)) < 0) {
                queue.latchBroken("inflight entry " + entry + " links outside the region");
                return false;
            }
            int flags = log.flags(e);
            id = log.id(e);
            if (chain.error() == null) {
                addBuffer(chain, log.addr(e), log.len(e), flags);
            }
        }
        if (id >= size || inUse[id]) {
            queue.latchBroken("inflight entry " + entry + " names buffer id " + id + ", out of range or in flight twice");
            return false;
        }
        takenFrom[takenNext] = -1 - (resubmitNext - 1);
        takenId[takenNext] = id;
        if (++takenNext == size) {
            takenNext = 0;
        }
        inUse[id] = true;
        slotsOf[id] = num;
        entryOf[id] = entry;
        chain.head(id);
        return true;
    }

    /**
     * Adds the buffers of one ring descriptor to {@code chain}: itself, or every entry of the
     * indirect table it points at (§2.8.7: len / 16 entries in order, NEXT ignored, none indirect).
     * Errors are recorded in the chain, whose walk over the ring goes on to find its extent and id.
     */
    private void addBuffer(DescriptorChain chain, long addr, int len, int flags) {
        if ((flags & F_INDIRECT) == 0) {
            chain.add(addr, len, (flags & F_WRITE) != 0);
            return;
        }
        if (!indirect) {
            chain.fail(ChainError.INDIRECT_NOT_NEGOTIATED);
            return;
        }
        if ((flags & F_NEXT) != 0) {
            chain.fail(ChainError.INDIRECT_WITH_NEXT);
            return;
        }
        long tableLength = Integer.toUnsignedLong(len);
        if (tableLength == 0 || tableLength % DESC_SIZE != 0 || tableLength / DESC_SIZE > chain.capacity()) {
            chain.fail(ChainError.INDIRECT_BAD_LENGTH);
            return;
        }
        GuestMemory mem = memory;
        int r = mem.regionOf(addr, tableLength);
        if (r < 0) {
            chain.fail(ChainError.INDIRECT_UNMAPPED);
            return;
        }
        MemorySegment t = mem.segment(r);
        long at = addr - mem.gpaBase(r);
        int n = (int) (tableLength / DESC_SIZE);
        for (int i = 0; i < n; i++, at += DESC_SIZE) {
            long a = t.get(SplitRing.DESC_ADDR, at);
            int l = t.get(SplitRing.DESC_LEN, at + LEN_OFFSET);
            int f = Short.toUnsignedInt(t.get(SplitRing.DESC_U16, at + FLAGS_OFFSET));
            if ((f & F_INDIRECT) != 0) {
                chain.fail(ChainError.INDIRECT_NESTED);
                return;
            }
            if (chain.add(a, l, (f & F_WRITE) != 0) != null) {
                return;
            }
        }
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
            inUse[id] = false;
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
    void complete(int id, long writtenLength, boolean quiet) {
        if (id < 0 || id >= size || !inUse[id]) {
            queue.completionRefused(id);
            return;
        }
        inUse[id] = false;
        if (inflight != null) {
            inflight.completed(entryOf[id]);
        }
        int slots = slotsOf[id];
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
        writeUsed(id, writtenLength, slots);
    }

    /** Writes the used descriptor for {@code id} at the used position and moves past {@code slots}. */
    private void writeUsed(int id, long writtenLength, int slots) {
        int slot = usedPos;
        long d = (long) slot * DESC_SIZE;
        ring.set(LE_INT, d + LEN_OFFSET, (int) writtenLength);
        ring.set(LE_SHORT, d + ID_OFFSET, (short) id);
        int flags = (usedWrap != 0 ? F_AVAIL | F_USED : 0) | (writtenLength != 0 ? F_WRITE : 0);
        if (batchSlot < 0) {
            batchSlot = slot; // its flags go out last, with the release store that publishes the batch
            batchFlags = flags;
        } else {
            ring.set(LE_SHORT, d + FLAGS_OFFSET, (short) flags);
        }
        if (log != null) {
            log.mark(ringGpa + d, DESC_SIZE);
        }
        usedPos += slots;
        if (usedPos >= size) {
            usedPos -= size;
            usedWrap ^= 1;
        }
    }

    @Override
    int publishUsed() {
        if (runCount > 0) {
            int slots = runSlots;
            runCount = 0;
            runSlots = 0;
            writeUsed(runId, runLength, slots);
        }
        if (batchSlot < 0) {
            return 0;
        }
        if (inflight != null) {
            inflight.publishing(usedPos, usedWrap);
        }
        U16_VH.setRelease(ring, (long) batchSlot * DESC_SIZE + FLAGS_OFFSET, (short) batchFlags);
        if (inflight != null) {
            inflight.published(usedPos, usedWrap);
        }
        VarHandle.fullFence(); // the driver's event suppression written before our descriptors were seen
        batchSlot = -1;
        publishedFrom = publishedTo;
        publishedTo = linear(usedPos, usedWrap);
        int n = publishedTo - publishedFrom;
        return n > 0 ? n : n + 2 * size;
    }

    @Override
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
        int eventAt = linear(offWrap & 0x7FFF, offWrap >>> 15);
        int twice = 2 * size;
        // vring_need_event over linear positions modulo two laps: did this batch cross the event position?
        int sinceEvent = Math.floorMod(publishedTo - eventAt - 1, twice);
        int batch = Math.floorMod(publishedTo - publishedFrom, twice);
        return sinceEvent < (batch == 0 ? twice : batch);
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
        return "packed(size " + size + ", avail " + availPos + "/" + availWrap + ", used " + usedPos + "/" + usedWrap + ")";
    }
}
