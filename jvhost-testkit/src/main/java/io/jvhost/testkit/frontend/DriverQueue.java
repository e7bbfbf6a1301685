package io.jvhost.testkit.frontend;

import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayDeque;

/**
 * The guest driver's side of one virtqueue, in {@link GuestRam}, in either layout ({@link Layout}):
 * writes descriptors, makes chains available, kicks, and waits for used elements. Also writes
 * arbitrary (hostile) descriptors for adversarial tests. Used from one test thread.
 *
 * <p>The same calls drive both layouts, so a device's tests can run on either: {@link #post} and
 * {@link #awaitUsed} (and {@link #chain}, {@link #indirectChain}, {@link #makeAvailable}) name
 * chains by what the used element carries: the head descriptor's index in a split ring, the buffer
 * id in a packed ring. A packed ring's descriptors are written at the driver's position in ring
 * order, its head last (with a release store) when it is made available. With
 * {@link #inOrder(boolean)} the driver accepts VIRTIO_F_IN_ORDER: one used element may stand for
 * every chain made available before it, and {@link #awaitUsed} hands those out one by one (with
 * length 0, except the one the element names).
 */
public final class DriverQueue implements AutoCloseable {
    // Unaligned: indirect tables may sit at any guest address, and tests put them there.
    public static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort ALIGNED_U16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt ALIGNED_U32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final VarHandle U16_VH = ALIGNED_U16.varHandle();
    public static final VarHandle U32_VH = ALIGNED_U32.varHandle();
    public static final int F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4;
    /** Packed ring descriptor flags (virtio 1.2 §2.8.1). */
    public static final int F_AVAIL = 1 << 7, F_USED = 1 << 15;
    /** Packed ring event suppression flags (§2.8.10). */
    public static final int EVENT_ENABLE = 0, EVENT_DISABLE = 1, EVENT_DESC = 2;

    /** The virtqueue layout: split (virtio 1.2 §2.7) or packed (§2.8, VIRTIO_F_RING_PACKED). */
    public enum Layout { SPLIT, PACKED }

    private final GuestRam ram;
    private final int index;
    private final int size;
    private final Layout layout;
    private final long descGpa, availGpa, usedGpa;
    private final MemorySegment desc, avail, used;
    private final Fd kick;
    private final Fd call;
    private boolean inOrder;
    // Split.
    private int freeHead;
    private int availIdx;
    private int lastUsedIdx;
    // Packed: where the next descriptor is written and the next used one read, with wrap counters.
    private int availPos, availWrap = 1, usedPos, usedWrap = 1;
    /** Packed: free buffer ids (a stack), and per id its descriptors in the ring. */
    private final int[] freeIds;
    private int freeCount;
    private final int[] slotsOf;
    /** Packed: chains written by {@link #chain} but not yet made available: id, head slot, head flags. */
    private final ArrayDeque<int[]> unpublished = new ArrayDeque<>();
    /** In order: chains made available and not used yet, oldest first (split heads or packed ids). */
    private final ArrayDeque<Integer> outstanding = new ArrayDeque<>();
    /** In order: chains a used element covered that {@link #awaitUsed} has not handed out yet. */
    private final ArrayDeque<Used> covered = new ArrayDeque<>();

    /** A buffer for {@link #post}: guest address, length, and whether the device writes it. */
    public record Buffer(long gpa, int length, boolean writable) {
        public static Buffer readable(long gpa, int length) {
            return new Buffer(gpa, length, false);
        }

        public static Buffer writable(long gpa, int length) {
            return new Buffer(gpa, length, true);
        }
    }

    /** One used element. */
    public record Used(int id, int length) {}

    /** A split queue. */
    public DriverQueue(GuestRam ram, int index, int size) throws NativeException {
        this(ram, index, size, Layout.SPLIT);
    }

    /**
     * A queue of {@code size} in {@code layout}: a split ring's descriptor table, avail and used
     * rings, or a packed ring's descriptor ring and its driver and device event suppression
     * structures (which SET_VRING_ADDR passes as avail and used).
     */
    public DriverQueue(GuestRam ram, int index, int size, Layout layout) throws NativeException {
        this.ram = ram;
        this.index = index;
        this.size = size;
        this.layout = layout;
        boolean packed = layout == Layout.PACKED;
        this.descGpa = ram.allocate(16L * size, 16);
        this.availGpa = ram.allocate(packed ? 4 : 6 + 2L * size, packed ? 4 : 2);
        this.usedGpa = ram.allocate(packed ? 4 : 6 + 8L * size, 4);
        this.desc = ram.at(descGpa, 16L * size);
        this.avail = ram.at(availGpa, packed ? 4 : 6 + 2L * size);
        this.used = ram.at(usedGpa, packed ? 4 : 6 + 8L * size);
        desc.fill((byte) 0);
        avail.fill((byte) 0);
        used.fill((byte) 0);
        this.freeIds = new int[packed ? size : 0];
        this.slotsOf = new int[packed ? size : 0];
        for (int i = 0; i < freeIds.length; i++) {
            freeIds[i] = size - 1 - i; // id 0 first
        }
        this.freeCount = freeIds.length;
        this.kick = EventFd.create();
        this.call = EventFd.create();
    }

    /** A packed queue. */
    public static DriverQueue packed(GuestRam ram, int index, int size) throws NativeException {
        return new DriverQueue(ram, index, size, Layout.PACKED);
    }

    public Layout layout() {
        return layout;
    }

    public boolean isPacked() {
        return layout == Layout.PACKED;
    }

    /**
     * Whether this driver accepted VIRTIO_F_IN_ORDER (and so reads one used element as the end of
     * a batch). Set before the first chain.
     */
    public DriverQueue inOrder(boolean on) {
        this.inOrder = on;
        return this;
    }

    public boolean inOrder() {
        return inOrder;
    }

    public int index() {
        return index;
    }

    public int size() {
        return size;
    }

    /** The descriptor table (split) or ring (packed). */
    public long descHva() {
        return GuestRam.hva(descGpa);
    }

    /** The avail ring (split) or the driver event suppression structure (packed). */
    public long availHva() {
        return GuestRam.hva(availGpa);
    }

    /** The used ring (split) or the device event suppression structure (packed). */
    public long usedHva() {
        return GuestRam.hva(usedGpa);
    }

    public Fd kickFd() {
        return kick;
    }

    public Fd callFd() {
        return call;
    }

    public GuestRam ram() {
        return ram;
    }

    private void requireSplit(String what) {
        if (layout != Layout.SPLIT) {
            throw new UnsupportedOperationException(what + " is for split rings");
        }
    }

    private void requirePacked(String what) {
        if (layout != Layout.PACKED) {
            throw new UnsupportedOperationException(what + " is for packed rings");
        }
    }

    /** Split: writes descriptor {@code i} exactly as given. */
    public void writeDescriptor(int i, long addr, int length, int flags, int next) {
        requireSplit("writeDescriptor");
        desc.set(U16, put(desc, 16L * i, addr, length, flags), (short) next);
    }

    /**
     * Packed: writes ring slot {@code slot} exactly as given, flags last with a release store
     * (AVAIL and USED bits included: the caller decides what lap it claims to be in).
     */
    public void writePackedDescriptor(int slot, long addr, int length, int id, int flags) {
        requirePacked("writePackedDescriptor");
        U16_VH.setRelease(desc, put(desc, 16L * slot, addr, length, id), (short) flags);
    }

    /** Writes descriptor {@code i} of an indirect table at {@code tableGpa} in this queue's layout. */
    public void writeIndirect(long tableGpa, int i, long addr, int length, int flags, int next) {
        MemorySegment t = ram.at(tableGpa + 16L * i, 16);
        if (layout == Layout.PACKED) {
            t.set(U16, put(t, 0, addr, length, 0), (short) flags); // id 0: ignored in a table
        } else {
            t.set(U16, put(t, 0, addr, length, flags), (short) next);
        }
    }

    /**
     * Writes the first 14 bytes of the 16-byte descriptor at {@code o}, alike in both layouts but for
     * what the first u16 means (split: flags, packed: id): addr, len, {@code first}. Returns where
     * the last u16 goes (split: next, packed: flags), which the caller writes, plainly or released.
     */
    private static long put(MemorySegment table, long o, long addr, int length, int first) {
        table.set(U64, o, addr);
        table.set(U32, o + 8, length);
        table.set(U16, o + 12, (short) first);
        return o + 14;
    }

    /** The AVAIL/USED bits of a descriptor made available in the lap with wrap counter {@code wrap}. */
    public static int availableFlags(int wrap) {
        return wrap != 0 ? F_AVAIL : F_USED;
    }

    /**
     * Writes {@code buffers} as a chain and returns what names it (split: the head index of
     * consecutive descriptors, wrapping the table; packed: a free buffer id, its descriptors at the
     * driver's position in the ring); does not make it available.
     */
    public int chain(Buffer... buffers) {
        if (layout == Layout.PACKED) {
            int[] flags = new int[buffers.length];
            long[] addr = new long[buffers.length];
            int[] len = new int[buffers.length];
            for (int b = 0; b < buffers.length; b++) {
                addr[b] = buffers[b].gpa();
                len[b] = buffers[b].length();
                flags[b] = (buffers[b].writable() ? F_WRITE : 0) | (b == buffers.length - 1 ? 0 : F_NEXT);
            }
            return packedChain(addr, len, flags);
        }
        int head = freeHead;
        for (int b = 0; b < buffers.length; b++) {
            int i = (head + b) % size;
            boolean last = b == buffers.length - 1;
            writeDescriptor(i, buffers[b].gpa(), buffers[b].length(),
                    (buffers[b].writable() ? F_WRITE : 0) | (last ? 0 : F_NEXT), (i + 1) % size);
        }
        freeHead = (head + buffers.length) % size;
        return head;
    }

    /** Packed: a chain of descriptors with these fields (AVAIL/USED bits added per slot), head flags held back. */
    private int packedChain(long[] addr, int[] len, int[] flags) {
        if (freeCount == 0) {
            throw new IllegalStateException("no free buffer id in a packed ring of " + size);
        }
        int id = freeIds[--freeCount];
        int headSlot = availPos, headFlags = 0;
        for (int b = 0; b < addr.length; b++) {
            int f = flags[b] | availableFlags(availWrap);
            long o = 16L * availPos;
            desc.set(U64, o, addr[b]);
            desc.set(U32, o + 8, len[b]);
            desc.set(U16, o + 12, (short) id);
            if (b == 0) {
                headFlags = f;
            } else {
                desc.set(U16, o + 14, (short) f);
            }
            if (++availPos == size) {
                availPos = 0;
                availWrap ^= 1;
            }
        }
        slotsOf[id] = addr.length;
        unpublished.add(new int[] {id, headSlot, headFlags});
        return id;
    }

    /** Writes {@code buffers} as an indirect table and returns what names the one-descriptor chain. */
    public int indirectChain(Buffer... buffers) {
        long table = ram.allocate(16L * buffers.length, 16);
        for (int b = 0; b < buffers.length; b++) {
            boolean last = b == buffers.length - 1;
            writeIndirect(table, b, buffers[b].gpa(), buffers[b].length(),
                    (buffers[b].writable() ? F_WRITE : 0) | (last || layout == Layout.PACKED ? 0 : F_NEXT), b + 1);
        }
        if (layout == Layout.PACKED) {
            return packedChain(new long[] {table}, new int[] {16 * buffers.length}, new int[] {F_INDIRECT});
        }
        int head = freeHead;
        writeDescriptor(head, table, 16 * buffers.length, F_INDIRECT, 0);
        freeHead = (head + 1) % size;
        return head;
    }

    /**
     * Makes the chain {@code head} available: split, puts it in the avail ring and publishes the new
     * index (release); packed, stores the head descriptor's flags (release), and those of any chain
     * written before it and not yet made available (the device sees a packed ring in order).
     */
    public void makeAvailable(int head) {
        if (layout == Layout.PACKED) {
            boolean found = false;
            for (int[] c : unpublished) {
                found |= c[0] == head;
            }
            if (!found) {
                throw new IllegalArgumentException("chain " + head + " was not written or is available already");
            }
            while (true) {
                int[] c = unpublished.poll();
                U16_VH.setRelease(desc, 16L * c[1] + 14, (short) c[2]);
                if (inOrder) {
                    outstanding.add(c[0]);
                }
                if (c[0] == head) {
                    return;
                }
            }
        }
        avail.set(U16, 4 + 2L * (availIdx % size), (short) head);
        availIdx = (availIdx + 1) & 0xFFFF;
        U16_VH.setRelease(avail, 2L, (short) availIdx);
        if (inOrder) {
            outstanding.add(head);
        }
    }

    /**
     * Where the driver makes the next chain available: split, the avail index it published;
     * packed, the ring position with its wrap counter in bit 15.
     */
    public int availIdx() {
        return layout == Layout.PACKED ? availPos | availWrap << 15 : availIdx;
    }

    /**
     * What GET_VRING_BASE answers once the device has used every chain made available: the avail
     * index (split) or, packed, the avail position and wrap counter in both halves (the device's
     * used position has caught up with it).
     */
    public int base() {
        int a = availIdx();
        return layout == Layout.PACKED ? a | a << 16 : a;
    }

    /**
     * Split: moves a fresh queue's avail, used and next-expected-used indices to {@code idx}, as if
     * {@code idx} chains had already gone round (for tests of 16-bit index wrap-around). Packed: moves
     * the positions to {@code idx} (bit 15 the wrap counter), as if the ring had gone round that far,
     * every earlier slot used. Call before the backend starts the ring, and give it the same
     * {@link #base()} with SET_VRING_BASE.
     */
    public void startAt(int idx) {
        if (layout == Layout.PACKED) {
            availPos = usedPos = idx & 0x7FFF;
            availWrap = usedWrap = (idx >>> 15) & 1;
            if (availPos >= size) {
                throw new IllegalArgumentException("position " + availPos + " in a ring of " + size);
            }
            // Every slot holds a used descriptor of the lap before, as the driver would have left it.
            for (int s = 0; s < size; s++) {
                int wrap = s < availPos ? availWrap : availWrap ^ 1;
                desc.set(U16, 16L * s + 14, (short) (wrap != 0 ? F_AVAIL | F_USED : 0));
            }
            return;
        }
        availIdx = idx & 0xFFFF;
        lastUsedIdx = availIdx;
        U16_VH.setRelease(avail, 2L, (short) availIdx);
        U16_VH.setRelease(used, 2L, (short) availIdx);
    }

    /** Split: publishes an arbitrary avail index (for ring-corruption tests). */
    public void setAvailIdx(int idx) {
        requireSplit("setAvailIdx");
        availIdx = idx & 0xFFFF;
        U16_VH.setRelease(avail, 2L, (short) availIdx);
    }

    /**
     * EVENT_IDX: interrupt me when the device passes {@code idx}: split, used_event in the avail
     * ring; packed, the driver event suppression structure in DESC mode at position {@code idx}
     * (wrap counter in bit 15).
     */
    public void setUsedEvent(int idx) {
        if (layout == Layout.PACKED) {
            U32_VH.setRelease(avail, 0L, (idx & 0xFFFF) | EVENT_DESC << 16);
            return;
        }
        avail.set(U16, 4 + 2L * size, (short) idx);
    }

    /**
     * EVENT_IDX: interrupt me at the next used element, wherever the ring stands (what a Linux
     * driver asks for when it re-enables callbacks): {@link #setUsedEvent} at the driver's used
     * index or position.
     */
    public void setUsedEventAtNext() {
        setUsedEvent(layout == Layout.PACKED ? usedPos | usedWrap << 15 : lastUsedIdx);
    }

    /**
     * Asks for no interrupts, or for every one: split, VRING_AVAIL_F_NO_INTERRUPT (without
     * EVENT_IDX); packed, the driver event flags DISABLE or ENABLE.
     */
    public void setNoInterrupt(boolean on) {
        if (layout == Layout.PACKED) {
            U32_VH.setRelease(avail, 0L, (on ? EVENT_DISABLE : EVENT_ENABLE) << 16);
            return;
        }
        avail.set(U16, 0, (short) (on ? 1 : 0));
    }

    /** Chains the buffers, makes them available and kicks. Returns what names the chain. */
    public int post(Buffer... buffers) {
        int head = chain(buffers);
        makeAvailable(head);
        kick();
        return head;
    }

    public void kick() {
        LibC.eventfdSignal(kick.get());
    }

    /** Split: the used index the device published. */
    public int usedIdx() {
        requireSplit("usedIdx");
        return Short.toUnsignedInt((short) U16_VH.getAcquire(used, 2L));
    }

    /**
     * The device's notification hint: split, the used ring's flags (VRING_USED_F_NO_NOTIFY);
     * packed, the device event suppression flags (ENABLE, DISABLE, DESC).
     */
    public int usedFlags() {
        if (layout == Layout.PACKED) {
            return ((int) U32_VH.getAcquire(used, 0L)) >>> 16;
        }
        return Short.toUnsignedInt(used.get(U16, 0));
    }

    /** EVENT_IDX: split, avail_event after the used ring; packed, the device event's off_wrap. */
    public int availEvent() {
        if (layout == Layout.PACKED) {
            return ((int) U32_VH.getAcquire(used, 0L)) & 0xFFFF;
        }
        return Short.toUnsignedInt(used.get(U16, 4 + 8L * size));
    }

    /** Packed: the flags of ring slot {@code slot} as they are now. */
    public int slotFlags(int slot) {
        requirePacked("slotFlags");
        return Short.toUnsignedInt((short) U16_VH.getAcquire(desc, 16L * slot + 14));
    }

    /** Whether the device has published a used element this driver has not taken yet. */
    public boolean hasUsed() {
        return !covered.isEmpty() || usedReady();
    }

    /** Waits for the next used element, polling; null on timeout. */
    public Used awaitUsed(Duration timeout) {
        if (!covered.isEmpty()) {
            return covered.poll();
        }
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!usedReady()) {
            if (System.nanoTime() > deadline) {
                return null;
            }
            Thread.onSpinWait();
            Thread.yield();
        }
        Used u;
        if (layout == Layout.PACKED) {
            long o = 16L * usedPos;
            u = new Used(Short.toUnsignedInt(desc.get(U16, o + 12)), desc.get(U32, o + 8));
            if (!inOrder) {
                advanceUsed(u.id());
                return u;
            }
        } else {
            long e = 4 + 8L * (lastUsedIdx % size);
            u = new Used(used.get(U32, e), used.get(U32, e + 4));
            if (!inOrder) {
                lastUsedIdx = (lastUsedIdx + 1) & 0xFFFF;
                return u;
            }
        }
        // In order: the element stands for every chain made available up to the one it names.
        if (!outstanding.contains(u.id())) {
            throw new IllegalStateException("used element names chain " + u.id() + ", which is not outstanding");
        }
        while (true) {
            int id = outstanding.poll();
            boolean last = id == u.id();
            covered.add(new Used(id, last ? u.length() : 0));
            if (layout == Layout.PACKED) {
                advanceUsed(id);
            } else {
                lastUsedIdx = (lastUsedIdx + 1) & 0xFFFF;
            }
            if (last) {
                return covered.poll();
            }
        }
    }

    private boolean usedReady() {
        if (layout == Layout.PACKED) {
            int f = slotFlags(usedPos);
            return ((f & F_AVAIL) != 0) == (usedWrap != 0) && ((f & F_USED) != 0) == (usedWrap != 0);
        }
        return usedIdx() != lastUsedIdx;
    }

    /** Packed: the chain {@code id} is used: skip its descriptors, free its id. */
    private void advanceUsed(int id) {
        if (id < 0 || id >= size) {
            throw new IllegalStateException("used descriptor with id " + id + " in a ring of " + size);
        }
        usedPos += slotsOf[id];
        if (usedPos >= size) {
            usedPos -= size;
            usedWrap ^= 1;
        }
        freeIds[freeCount++] = id;
    }

    /** Reads and clears the call eventfd: how many interrupts arrived since the last call. */
    public long takeInterrupts() {
        long n = LibC.eventfdDrain(call.get());
        return n < 0 ? 0 : n;
    }

    @Override
    public void close() {
        kick.close();
        call.close();
    }
}
