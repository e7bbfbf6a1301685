package io.jvhost.core.ring;

import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.metrics.QueueLatency;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static io.jvhost.core.ring.LeLayouts.LE_INT;
import static io.jvhost.core.ring.LeLayouts.LE_SHORT;
import static io.jvhost.core.ring.LeLayouts.U16_VH;
import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED;
import static java.nio.ByteOrder.LITTLE_ENDIAN;

/**
 * The split virtqueue layout (virtio 1.2 §2.7): a descriptor table, the driver's avail ring of
 * heads, and the device's used ring of (id, length) elements, each with a free-running 16-bit index.
 * With VIRTIO_F_EVENT_IDX the notification hints are used_event (after the avail ring) and
 * avail_event (after the used ring), else the rings' flags. Split-ring in-flight tracking
 * ({@link InflightLog}) lives here too. Poller thread once attached.
 */
final class SplitRing extends Ring {
    private static final Logger LOG = LoggerFactory.getLogger(SplitRing.class);
    // Unaligned: an indirect table may sit at any guest address (the main table is 16-aligned).
    static final ValueLayout.OfLong DESC_ADDR = JAVA_LONG_UNALIGNED.withOrder(LITTLE_ENDIAN);
    static final ValueLayout.OfInt DESC_LEN = JAVA_INT_UNALIGNED.withOrder(LITTLE_ENDIAN);
    static final ValueLayout.OfShort DESC_U16 = JAVA_SHORT_UNALIGNED.withOrder(LITTLE_ENDIAN);
    static final int IDX_OFFSET = 2, RING_OFFSET = 4, USED_ELEM_SIZE = 8, DESC_SIZE = 16;
    static final int F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4;
    static final int VRING_USED_F_NO_NOTIFY = 1, VRING_AVAIL_F_NO_INTERRUPT = 1;

    MemorySegment desc;
    MemorySegment avail;
    private MemorySegment used;
    private boolean inOrder;
    InflightLog inflight;
    private MemorySegment inflightRegion;
    /** IN_ORDER: a run of quiet completions not written yet (count 0: none), and its last id and length. */
    private int runCount, runId;
    private long runLength;
    private int[] resubmit = new int[0];

    // Ring position, owned by the poller while attached.
    int lastAvailIdx;
    int availIdxCache;
    private int usedIdx;
    private int usedIdxAtLastPublish;
    private int publishedFrom;
    /** After a rewind: the avail index that was not enough; -1 when not starved. */
    int starvedAt = -1;

    SplitRing(VirtQueue queue) {
        super(queue);
    }

    @Override
    void configure(int size, MemorySegment desc, MemorySegment avail, MemorySegment used, GuestMemory memory,
                   long base, boolean eventIdx, boolean indirect, boolean inOrder, MemorySegment inflightRegion) {
        if (size < 1 || size > VirtQueue.MAX_SIZE || Integer.bitCount(size) != 1) {
            throw new IllegalArgumentException("split queue size " + size + " is not a power of two up to "
                    + VirtQueue.MAX_SIZE);
        }
        if (desc.byteSize() < (long) DESC_SIZE * size || avail.byteSize() < 6 + 2L * size
                || used.byteSize() < 6 + (long) USED_ELEM_SIZE * size) {
            throw new IllegalArgumentException("rings smaller than the queue size");
        }
        this.size = size;
        this.desc = desc;
        this.avail = avail;
        this.used = used;
        this.memory = memory;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
        this.inOrder = inOrder;
        if (inflightRegion == null) {
            this.inflight = null;
        } else if (inflight == null || inflightRegion != this.inflightRegion || inflight.size() != size) {
            this.inflight = new InflightLog(inflightRegion, size);
        }
        this.inflightRegion = inflightRegion;
        this.lastAvailIdx = (int) base & 0xFFFF;
        this.availIdxCache = lastAvailIdx;
        this.usedIdx = Short.toUnsignedInt((short) U16_VH.getAcquire(used, (long) IDX_OFFSET));
        this.usedIdxAtLastPublish = usedIdx;
        this.starvedAt = -1;
        this.runCount = 0;
        this.resubmitCount = 0;
        this.resubmitNext = 0;
        this.baseCorrected = false;
        if (inflight != null) {
            recover(inflight);
        }
    }

    /** Why {@code base} (a SET_VRING_BASE value for a split ring) cannot be, or null: it is a 16-bit index. */
    static String baseProblem(long base) {
        return base < 0 || base > 0xFFFF ? "split ring base " + base + " beyond 16 bits" : null;
    }

    private void recover(InflightLog inflight) {
        if (resubmit.length < size) {
            resubmit = new int[size];
        }
        int inFlight = inflight.recover(used, usedIdx, resubmit);
        // What was taken is what was completed plus what is still in flight. The frontend's base
        // can be older: after a dropped connection QEMU rewinds to the used index it read while the
        // old session was still finishing requests.
        int taken = (usedIdx + inFlight) & 0xFFFF;
        if (taken != lastAvailIdx && lastAvailIdx != usedIdx) {
            LOG.warn("queue {}: frontend resumes at {} but {} requests were completed and {} are in flight;"
                    + " resuming at {}", queue.index(), lastAvailIdx, usedIdx, inFlight, taken);
            baseCorrected = true;
        }
        lastAvailIdx = taken;
        availIdxCache = lastAvailIdx;
        resubmitting(inFlight);
    }

    @Override
    long base() {
        return lastAvailIdx;
    }

    @Override
    int availIdx() {
        return lastAvailIdx;
    }

    @Override
    int usedIdx() {
        return usedIdx;
    }

    private int availIdxAcquire() {
        return Short.toUnsignedInt((short) U16_VH.getAcquire(avail, (long) IDX_OFFSET));
    }

    /**
     * Re-reads the avail index into the cache, or latches the queue broken (and returns false) when
     * it moved by more than the queue size. Every read of the driver's index goes through here, so
     * that no caller can leave an unchecked index in the cache for {@link #take} to trust.
     */
    boolean refreshAvailIdx() {
        int availIdx = availIdxAcquire();
        if (((availIdx - lastAvailIdx) & 0xFFFF) > size) {
            queue.latchBroken("avail index jumped from " + lastAvailIdx + " to " + availIdx);
            return false;
        }
        if (QueueLatency.ENABLED && availIdx != availIdxCache) {
            queue.workSeen(); // busy-polling has no kick: new buffers start the clock
        }
        availIdxCache = availIdx;
        return true;
    }

    @Override
    boolean hasAvailable() {
        if (resubmitNext < resubmitCount) {
            return true;
        }
        if (starvedAt >= 0) {
            if (availIdxAcquire() == starvedAt) {
                return false;
            }
            starvedAt = -1; // the driver added buffers: worth another try
        }
        if (availIdxCache == lastAvailIdx && !refreshAvailIdx()) {
            return false;
        }
        return availIdxCache != lastAvailIdx;
    }

    @Override
    boolean take(DescriptorChain chain) {
        if (resubmitNext < resubmitCount) { // a previous backend's requests come first, in order
            parse(chain, desc, size, resubmit[resubmitNext++], memory, indirect);
            return true;
        }
        if (availIdxCache == lastAvailIdx && (!refreshAvailIdx() || availIdxCache == lastAvailIdx)) {
            return false;
        }
        long slot = RING_OFFSET + 2L * (lastAvailIdx & (size - 1));
        int head = Short.toUnsignedInt(avail.get(LE_SHORT, slot)); // plain: after the acquire of the index
        if (head >= size) {
            queue.latchBroken("head " + head + " out of range for size " + size);
            return false;
        }
        lastAvailIdx = (lastAvailIdx + 1) & 0xFFFF;
        starvedAt = -1; // taken again after a rewind: avail_event must not name the old index
        if (parse(chain, desc, size, head, memory, indirect) == null && inflight != null) {
            inflight.mark(head);
        }
        return true;
    }

    @Override
    int takeBurst(BufferBurst b, int max, long headroom, long[] lengths, int from, boolean writable) {
        return SplitBursts.take(this, b, max, headroom, lengths, from, writable);
    }

    @Override
    void rewind(int chains) {
        lastAvailIdx = (lastAvailIdx - chains) & 0xFFFF;
        // What is available is not enough: only new buffers count as work, so the poller may sleep.
        starvedAt = availIdxCache;
    }

    @Override
    void complete(int id, long writtenLength, boolean quiet) {
        int count = 1;
        if (inOrder && inflight == null) {
            if (quiet) { // the next completion, or the publish, writes the one used element for the run
                runCount++;
                runId = id;
                runLength = writtenLength;
                return;
            }
            count += runCount;
            runCount = 0;
        }
        writeUsed(id, writtenLength, count);
    }

    /**
     * Writes one used element for {@code id} at the used index and moves the index on by
     * {@code count}: more than 1 only with IN_ORDER, for the quiet chains taken before it (§2.7.9).
     */
    private void writeUsed(int id, long writtenLength, int count) {
        long e = RING_OFFSET + (long) USED_ELEM_SIZE * (usedIdx & (size - 1));
        used.set(LE_INT, e, id);
        used.set(LE_INT, e + 4, (int) writtenLength);
        if (log != null) {
            log.mark(deviceAreaGpa + e, USED_ELEM_SIZE);
        }
        usedIdx = (usedIdx + count) & 0xFFFF;
    }

    /** Writes the pending IN_ORDER run and the used index (a release store); false when nothing was used since the last publish. */
    private boolean writeUsedIdx() {
        if (runCount > 0) {
            int count = runCount;
            runCount = 0;
            writeUsed(runId, runLength, count);
        }
        if (usedIdx == usedIdxAtLastPublish) {
            return false;
        }
        U16_VH.setRelease(used, (long) IDX_OFFSET, (short) usedIdx);
        if (log != null) {
            log.mark(deviceAreaGpa + IDX_OFFSET, 2);
        }
        return true;
    }

    @Override
    int publishUsed() {
        if (!writeUsedIdx()) {
            return 0;
        }
        if (inflight != null) {
            inflight.published(used, usedIdxAtLastPublish, usedIdx);
        }
        VarHandle.fullFence(); // the driver's used_event / flags written before our index was seen
        publishedFrom = usedIdxAtLastPublish;
        usedIdxAtLastPublish = usedIdx;
        return (usedIdx - publishedFrom) & 0xFFFF;
    }

    @Override
    void exposeUsed() {
        if (inflight == null) {
            writeUsedIdx();
        }
    }

    @Override
    boolean interruptWanted() {
        if (eventIdx) {
            int usedEvent = Short.toUnsignedInt(avail.get(LE_SHORT, RING_OFFSET + 2L * size));
            return ((usedIdx - usedEvent - 1) & 0xFFFF) < ((usedIdx - publishedFrom) & 0xFFFF);
        }
        return (avail.get(LE_SHORT, 0) & VRING_AVAIL_F_NO_INTERRUPT) == 0;
    }

    @Override
    void disableNotifications() {
        if (!eventIdx) {
            U16_VH.setRelease(used, 0L, (short) VRING_USED_F_NO_NOTIFY);
            if (log != null) {
                log.mark(deviceAreaGpa, 2);
            }
        }
    }

    @Override
    void enableNotifications() {
        if (eventIdx) {
            // Starved: ask for a kick when buffers beyond those already seen arrive.
            long availEvent = RING_OFFSET + (long) USED_ELEM_SIZE * size;
            U16_VH.setRelease(used, availEvent, (short) (starvedAt >= 0 ? starvedAt : lastAvailIdx));
            if (log != null) {
                log.mark(deviceAreaGpa + availEvent, 2);
            }
        } else {
            U16_VH.setRelease(used, 0L, (short) 0);
            if (log != null) {
                log.mark(deviceAreaGpa, 2);
            }
        }
    }

    /**
     * Walks the chain at {@code head} of a split descriptor table of {@code tableSize} entries into
     * {@code chain} (virtio 1.2 §2.7.5, indirect tables §2.7.5.3) and returns null, or the reason it
     * is malformed, which is also left in {@link DescriptorChain#error()}. Each descriptor is read
     * once; nothing outside {@code table} and checked buffers is read. Loops end at the chain's
     * capacity (the queue size): no chain has more buffers than that.
     */
    static ChainError parse(DescriptorChain chain, MemorySegment table, int tableSize, int head, GuestMemory mem,
                            boolean indirectAllowed) {
        chain.begin(head, mem);
        MemorySegment t = table;
        long tBase = 0;
        int tSize = tableSize;
        boolean inIndirect = false;
        int i = head;
        while (true) {
            long d = tBase + (long) i * DESC_SIZE;
            long addr = t.get(DESC_ADDR, d);
            int len = t.get(DESC_LEN, d + 8);
            int flags = Short.toUnsignedInt(t.get(DESC_U16, d + 12));
            int next = Short.toUnsignedInt(t.get(DESC_U16, d + 14));
            if ((flags & F_INDIRECT) != 0) {
                if (!indirectAllowed) {
                    return chain.fail(ChainError.INDIRECT_NOT_NEGOTIATED);
                }
                if (inIndirect) {
                    return chain.fail(ChainError.INDIRECT_NESTED);
                }
                if ((flags & F_NEXT) != 0) {
                    return chain.fail(ChainError.INDIRECT_WITH_NEXT);
                }
                long tableLength = Integer.toUnsignedLong(len);
                if (tableLength == 0 || tableLength % DESC_SIZE != 0 || tableLength / DESC_SIZE > chain.capacity()) {
                    return chain.fail(ChainError.INDIRECT_BAD_LENGTH);
                }
                int r = mem.regionOf(addr, tableLength);
                if (r < 0) {
                    return chain.fail(ChainError.INDIRECT_UNMAPPED);
                }
                t = mem.segment(r);
                tBase = addr - mem.gpaBase(r);
                tSize = (int) (tableLength / DESC_SIZE);
                inIndirect = true;
                i = 0;
                continue;
            }
            ChainError e = chain.add(addr, len, (flags & F_WRITE) != 0);
            if (e != null) {
                return e;
            }
            if ((flags & F_NEXT) == 0) {
                return null;
            }
            if (next >= tSize) {
                return chain.fail(ChainError.NEXT_OUT_OF_RANGE);
            }
            i = next;
        }
    }

    @Override
    public String toString() {
        return "split(size " + size + ", avail " + lastAvailIdx + ", used " + usedIdx + ")";
    }
}
