package io.jvhost.core.ring;

import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;

/**
 * The packed virtqueue's memory format (virtio 1.2 §2.8), apart from the state machine that walks
 * it ({@link PackedRing}, {@link PackedUsed}) and from the inflight log that copies it
 * ({@link PackedInflightLog}): 16-byte descriptors {addr, len, id, flags}, the AVAIL/USED flag
 * bits that tell laps apart, the event suppression flags, and the vhost-user vring base that packs
 * both positions with their wrap counters into one number; and how a descriptor, or the indirect
 * table it points at, becomes a chain's buffers. Constants and functions, no state.
 */
final class PackedLayout {
    static final int DESC_SIZE = 16, LEN_OFFSET = 8, ID_OFFSET = 12, FLAGS_OFFSET = 14;
    static final int F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4, F_AVAIL = 1 << 7, F_USED = 1 << 15;
    /** Event suppression flags (§2.8.10). */
    static final int EVENT_ENABLE = 0, EVENT_DISABLE = 1, EVENT_DESC = 2;
    /** The largest packed queue: positions and wrap counter share 16 bits. */
    static final int MAX_SIZE = 1 << 15;

    private PackedLayout() {
    }

    /** Whether descriptor flags say "made available in the lap with wrap counter {@code wrap}". */
    static boolean isAvailable(int flags, int wrap) {
        return ((flags & F_AVAIL) != 0) == (wrap != 0) && ((flags & F_USED) != 0) != (wrap != 0);
    }

    /**
     * How many descriptors from {@code pos} (lap {@code wrap}), at most {@code max}, are available
     * one-descriptor chains whose WRITE flag is {@code write}: their flags alone, read plainly; the
     * caller fences (acquire) once before it reads those descriptors. As DPDK checks a batch's
     * flags first: one acquire per descriptor instead kept C2 from compiling the take loop as
     * tightly (LoopbackBench packed ~10-15 ns per frame more, perf/RESULTS.md 2026-12-07).
     */
    static int availableRun(MemorySegment ring, int size, int pos, int wrap, int max, int write) {
        // Available in this lap (AVAIL = wrap, USED = !wrap) and of the asked shape: one compare.
        int mask = F_AVAIL | F_USED | F_NEXT | F_WRITE | F_INDIRECT;
        int expected = (wrap != 0 ? F_AVAIL : F_USED) | write;
        int n = 0;
        for (; n < max; n++) {
            if ((ring.get(LeLayouts.LE_SHORT, (long) pos * DESC_SIZE + FLAGS_OFFSET) & mask) != expected) {
                return n;
            }
            if (++pos == size) {
                pos = 0;
                expected ^= F_AVAIL | F_USED;
            }
        }
        return n;
    }

    /** The vhost-user packed vring base (§ SET_VRING_BASE): avail position and wrap in the low half, used in the high. */
    static long base(int availPos, int availWrap, int usedPos, int usedWrap) {
        return (availPos | (long) availWrap << 15) | (usedPos | (long) usedWrap << 15) << 16;
    }

    /** A position and wrap counter as one number in [0, 2 * size): laps with wrap 1 first. */
    static int linear(int size, int pos, int wrap) {
        return wrap != 0 ? pos : pos + size;
    }

    /**
     * Refuses, with {@link IllegalArgumentException}, a packed queue of {@code size} whose areas are
     * smaller than it or whose vring {@code base} cannot be ({@link #baseProblem}).
     */
    static void checkConfig(int size, MemorySegment desc, MemorySegment driverArea, MemorySegment deviceArea, long base) {
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

    /**
     * Adds the buffers of one ring descriptor to {@code chain}: itself, or every entry of the
     * indirect table it points at (§2.8.7: len / 16 entries in order, NEXT ignored, none indirect;
     * only with {@code indirect} negotiated). Errors are recorded in the chain, whose walk over the
     * ring goes on to find its extent and id.
     */
    static void addBuffer(DescriptorChain chain, GuestMemory mem, boolean indirect, long addr, int len, int flags) {
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
}
