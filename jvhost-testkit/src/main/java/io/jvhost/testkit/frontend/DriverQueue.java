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

/**
 * The guest driver's side of one split virtqueue, in {@link GuestRam}: writes descriptors, makes
 * chains available, kicks, and waits for used elements. Also writes arbitrary (hostile)
 * descriptors for adversarial tests. Used from one test thread.
 */
public final class DriverQueue implements AutoCloseable {
    // Unaligned: indirect tables may sit at any guest address, and tests put them there.
    public static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort ALIGNED_U16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);
    public static final VarHandle U16_VH = ALIGNED_U16.varHandle();
    public static final int F_NEXT = 1, F_WRITE = 2, F_INDIRECT = 4;

    private final GuestRam ram;
    private final int index;
    private final int size;
    private final long descGpa, availGpa, usedGpa;
    private final MemorySegment desc, avail, used;
    private final Fd kick;
    private final Fd call;
    private int freeHead;
    private int availIdx;
    private int lastUsedIdx;

    /** A buffer for {@link #post}: guest address, length, and whether the device writes it. */
    public record Buffer(long gpa, int length, boolean writable) {
        public static Buffer readable(long gpa, int length) {
            return new Buffer(gpa, length, false);
        }

        public static Buffer writable(long gpa, int length) {
            return new Buffer(gpa, length, true);
        }
    }

    /** One used ring element. */
    public record Used(int id, int length) {}

    public DriverQueue(GuestRam ram, int index, int size) throws NativeException {
        this.ram = ram;
        this.index = index;
        this.size = size;
        this.descGpa = ram.allocate(16L * size, 16);
        this.availGpa = ram.allocate(6 + 2L * size, 2);
        this.usedGpa = ram.allocate(6 + 8L * size, 4);
        this.desc = ram.at(descGpa, 16L * size);
        this.avail = ram.at(availGpa, 6 + 2L * size);
        this.used = ram.at(usedGpa, 6 + 8L * size);
        desc.fill((byte) 0);
        avail.fill((byte) 0);
        used.fill((byte) 0);
        this.kick = EventFd.create();
        this.call = EventFd.create();
    }

    public int index() {
        return index;
    }

    public int size() {
        return size;
    }

    public long descHva() {
        return GuestRam.hva(descGpa);
    }

    public long availHva() {
        return GuestRam.hva(availGpa);
    }

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

    /** Writes descriptor {@code i} exactly as given. */
    public void writeDescriptor(int i, long addr, int length, int flags, int next) {
        long o = 16L * i;
        desc.set(U64, o, addr);
        desc.set(U32, o + 8, length);
        desc.set(U16, o + 12, (short) flags);
        desc.set(U16, o + 14, (short) next);
    }

    /** Writes descriptor {@code i} of an indirect table at {@code tableGpa}. */
    public void writeIndirect(long tableGpa, int i, long addr, int length, int flags, int next) {
        MemorySegment t = ram.at(tableGpa + 16L * i, 16);
        t.set(U64, 0, addr);
        t.set(U32, 8, length);
        t.set(U16, 12, (short) flags);
        t.set(U16, 14, (short) next);
    }

    /**
     * Writes {@code buffers} as a chain into consecutive descriptors (wrapping the table) and
     * returns the head index; does not make it available.
     */
    public int chain(Buffer... buffers) {
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

    /** Writes {@code buffers} as an indirect table and returns the head of the one-descriptor chain. */
    public int indirectChain(Buffer... buffers) {
        long table = ram.allocate(16L * buffers.length, 16);
        for (int b = 0; b < buffers.length; b++) {
            boolean last = b == buffers.length - 1;
            writeIndirect(table, b, buffers[b].gpa(), buffers[b].length(),
                    (buffers[b].writable() ? F_WRITE : 0) | (last ? 0 : F_NEXT), b + 1);
        }
        int head = freeHead;
        writeDescriptor(head, table, 16 * buffers.length, F_INDIRECT, 0);
        freeHead = (head + 1) % size;
        return head;
    }

    /** Puts {@code head} in the avail ring and publishes the new index (release). */
    public void makeAvailable(int head) {
        avail.set(U16, 4 + 2L * (availIdx % size), (short) head);
        availIdx = (availIdx + 1) & 0xFFFF;
        U16_VH.setRelease(avail, 2L, (short) availIdx);
    }

    /** The avail index the driver has published. */
    public int availIdx() {
        return availIdx;
    }

    /**
     * Moves a fresh queue's avail, used and next-expected-used indices to {@code idx}, as if
     * {@code idx} chains had already gone round (for tests of 16-bit index wrap-around). Call before
     * the backend starts the ring, and give it the same index with SET_VRING_BASE.
     */
    public void startAt(int idx) {
        availIdx = idx & 0xFFFF;
        lastUsedIdx = availIdx;
        U16_VH.setRelease(avail, 2L, (short) availIdx);
        U16_VH.setRelease(used, 2L, (short) availIdx);
    }

    /** Publishes an arbitrary avail index (for ring-corruption tests). */
    public void setAvailIdx(int idx) {
        availIdx = idx & 0xFFFF;
        U16_VH.setRelease(avail, 2L, (short) availIdx);
    }

    /** Writes the used_event field (EVENT_IDX): interrupt me when used idx passes it. */
    public void setUsedEvent(int idx) {
        avail.set(U16, 4 + 2L * size, (short) idx);
    }

    /** Sets VRING_AVAIL_F_NO_INTERRUPT (without EVENT_IDX). */
    public void setNoInterrupt(boolean on) {
        avail.set(U16, 0, (short) (on ? 1 : 0));
    }

    /** Chains the buffers, makes them available and kicks. Returns the head. */
    public int post(Buffer... buffers) {
        int head = chain(buffers);
        makeAvailable(head);
        kick();
        return head;
    }

    public void kick() {
        LibC.eventfdSignal(kick.get());
    }

    public int usedIdx() {
        return Short.toUnsignedInt((short) U16_VH.getAcquire(used, 2L));
    }

    /** The used_flags / avail_event the device wrote (notification suppression). */
    public int usedFlags() {
        return Short.toUnsignedInt(used.get(U16, 0));
    }

    public int availEvent() {
        return Short.toUnsignedInt(used.get(U16, 4 + 8L * size));
    }

    /** Waits for the next used element, polling; null on timeout. */
    public Used awaitUsed(Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (usedIdx() == lastUsedIdx) {
            if (System.nanoTime() > deadline) {
                return null;
            }
            Thread.onSpinWait();
            Thread.yield();
        }
        long e = 4 + 8L * (lastUsedIdx % size);
        Used u = new Used(used.get(U32, e), used.get(U32, e + 4));
        lastUsedIdx = (lastUsedIdx + 1) & 0xFFFF;
        return u;
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
