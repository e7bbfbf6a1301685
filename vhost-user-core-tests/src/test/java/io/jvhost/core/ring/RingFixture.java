package io.jvhost.core.ring;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.memory.InvalidMemoryException;
import io.jvhost.core.memory.MemoryMap;
import io.jvhost.core.memory.MemoryMap.RegionSpec;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * One virtqueue (split, or packed with {@link #packed}) without a socket: simulated guest RAM in a
 * memfd, mapped a second time through a {@link MemoryMap} exactly as SET_MEM_TABLE would, a
 * {@link DriverQueue} writing the guest's side and a {@link VirtQueue} configured on the
 * translated rings. Test thread only.
 */
final class RingFixture implements AutoCloseable {
    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong U64_UNALIGNED =
            ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt U32_UNALIGNED = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort U16_UNALIGNED =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final int F_NEXT = DriverQueue.F_NEXT, F_WRITE = DriverQueue.F_WRITE, F_INDIRECT = DriverQueue.F_INDIRECT;

    final int size;
    final GuestRam ram;
    final MemoryMap map = new MemoryMap();
    final GuestMemory memory;
    final DriverQueue driver;
    final VirtQueue queue = new VirtQueue(0);
    final Fd err;
    final long descGpa, availGpa, usedGpa;

    /** A queue of {@code size} in {@code ramSize} bytes of guest RAM split into regions at {@code splits}. */
    RingFixture(int size, long ramSize, long... splits) throws NativeException, InvalidMemoryException {
        this(size, ramSize, new boolean[splits.length + 1], splits);
    }

    /**
     * As above, but the regions marked in {@code unmapped} are left out of the memory table: holes
     * in guest-physical memory that the backend must never touch.
     */
    RingFixture(int size, long ramSize, boolean[] unmapped, long... splits) throws NativeException, InvalidMemoryException {
        this(DriverQueue.Layout.SPLIT, size, ramSize, unmapped, splits);
    }

    /** As above, the ring in {@code layout}. */
    RingFixture(DriverQueue.Layout layout, int size, long ramSize, boolean[] unmapped, long... splits)
            throws NativeException, InvalidMemoryException {
        this.size = size;
        this.ram = new GuestRam(ramSize, splits);
        DriverQueue d = null;
        Fd e = null;
        try {
            List<RegionSpec> specs = new ArrayList<>();
            List<Fd> fds = new ArrayList<>();
            for (int i = 0; i < ram.regionCount(); i++) {
                if (!unmapped[i]) {
                    long gpa = ram.regionGpa(i);
                    specs.add(new RegionSpec(gpa, ram.regionSize(i), GuestRam.hva(gpa), gpa));
                    fds.add(ram.fd().dup());
                }
            }
            map.replace(specs, fds.toArray(new Fd[0]));
            d = new DriverQueue(ram, 0, size, layout);
            e = EventFd.create();
        } catch (NativeException | InvalidMemoryException | RuntimeException ex) {
            if (d != null) {
                d.close();
            }
            map.close();
            ram.close();
            throw ex;
        }
        this.memory = map.current();
        this.driver = d;
        this.err = e;
        this.descGpa = d.descHva() - GuestRam.HVA_BASE;
        this.availGpa = d.availHva() - GuestRam.HVA_BASE;
        this.usedGpa = d.usedHva() - GuestRam.HVA_BASE;
    }

    static RingFixture of(int size) throws NativeException, InvalidMemoryException {
        return new RingFixture(size, 1 << 20);
    }

    /** A packed queue of {@code size} in 1 MiB of guest RAM. */
    static RingFixture packed(int size) throws NativeException, InvalidMemoryException {
        return of(DriverQueue.Layout.PACKED, size);
    }

    static RingFixture of(DriverQueue.Layout layout, int size) throws NativeException, InvalidMemoryException {
        return new RingFixture(layout, size, 1 << 20, new boolean[1]);
    }

    boolean isPacked() {
        return driver.isPacked();
    }

    /** Configures the queue on its rings (translated by hva, as SET_VRING_ADDR does) with call and err fds. */
    RingFixture configure(int lastAvail, boolean eventIdx, boolean indirect) {
        if (isPacked()) {
            return configure(lastAvail, (eventIdx ? VirtQueue.EVENT_IDX : 0) | (indirect ? VirtQueue.INDIRECT : 0));
        }
        MemorySegment desc = memory.translateHva(driver.descHva(), 16L * size);
        MemorySegment avail = memory.translateHva(driver.availHva(), 6 + 2L * size);
        MemorySegment used = memory.translateHva(driver.usedHva(), 6 + 8L * size);
        queue.configure(size, desc, avail, used, memory, lastAvail & 0xFFFF,
                (eventIdx ? VirtQueue.EVENT_IDX : 0) | (indirect ? VirtQueue.INDIRECT : 0), err.get());
        queue.callFd(driver.callFd().get());
        return this;
    }

    /**
     * Configures the queue at {@code base} (in its layout's SET_VRING_BASE encoding) with the
     * {@link VirtQueue} options given; {@link VirtQueue#PACKED} is added for a packed fixture.
     */
    RingFixture configure(long base, int options) {
        boolean packed = isPacked();
        MemorySegment desc = memory.translateHva(driver.descHva(), 16L * size);
        MemorySegment avail = memory.translateHva(driver.availHva(), packed ? 4 : 6 + 2L * size);
        MemorySegment used = memory.translateHva(driver.usedHva(), packed ? 4 : 6 + 8L * size);
        queue.configure(size, desc, avail, used, memory, base, options | (packed ? VirtQueue.PACKED : 0), err.get());
        queue.callFd(driver.callFd().get());
        return this;
    }

    /**
     * A new queue on the same rings, as a backend started after this one died would build it:
     * tracking {@code inflight} (a queue's slice of an inflight region, or null), configured at
     * {@code base} with {@code options}.
     */
    VirtQueue restart(MemorySegment inflight, long base, int options) {
        boolean packed = isPacked();
        VirtQueue q = new VirtQueue(0);
        q.inflight(inflight);
        q.configure(size, memory.translateHva(driver.descHva(), 16L * size),
                memory.translateHva(driver.availHva(), packed ? 4 : 6 + 2L * size),
                memory.translateHva(driver.usedHva(), packed ? 4 : 6 + 8L * size), memory, base,
                options | (packed ? VirtQueue.PACKED : 0), err.get());
        q.callFd(driver.callFd().get());
        return q;
    }

    /** A fresh ring's base in the fixture's layout: 0, or QEMU's packed start (positions 0, wrap counters 1). */
    long freshBase() {
        return isPacked() ? 0x8000_8000L : 0;
    }

    RingFixture configure() {
        return configure(0, false, true);
    }

    /**
     * Writes entry {@code i} of an indirect table at {@code tableGpa}, which need not be aligned
     * (unlike {@code DriverQueue.writeIndirect}, whose aligned stores refuse such tables).
     */
    void writeIndirect(long tableGpa, int i, long addr, int length, int flags, int next) {
        MemorySegment t = ram.at(tableGpa + 16L * i, 16);
        t.set(U64_UNALIGNED, 0, addr);
        t.set(U32_UNALIGNED, 8, length);
        t.set(U16_UNALIGNED, 12, (short) flags);
        t.set(U16_UNALIGNED, 14, (short) next);
    }

    /** Writes the used index into the ring (what a restarted device resumes from). */
    void setUsedIdxInRing(int idx) {
        ram.at(usedGpa + 2, 2).set(U16, 0, (short) idx);
    }

    /** The id of the used element written at used index {@code ringIdx} (taken modulo the size). */
    int usedId(int ringIdx) {
        return ram.at(usedGpa + 4 + 8L * (ringIdx & (size - 1)), 8).get(U32, 0);
    }

    int usedLength(int ringIdx) {
        return ram.at(usedGpa + 4 + 8L * (ringIdx & (size - 1)), 8).get(U32, 4);
    }

    /** The whole used ring (flags, idx, elements, avail_event) as bytes. */
    byte[] usedRingBytes() {
        return ram.at(usedGpa, 6 + 8L * size).toArray(JAVA_BYTE);
    }

    /** How many times the err eventfd was written since the last call. */
    long errSignals() {
        long n = LibC.eventfdDrain(err.get());
        return n < 0 ? 0 : n;
    }

    /** A fresh buffer in guest RAM filled with {@code seed, seed + 1, ...}; returns its gpa. */
    long buffer(int length, int seed) {
        long gpa = ram.allocate(length, 16);
        MemorySegment s = ram.at(gpa, length);
        for (int i = 0; i < length; i++) {
            s.set(JAVA_BYTE, i, (byte) (seed + i));
        }
        return gpa;
    }

    long buffer(int length) {
        return buffer(length, 0);
    }

    @Override
    public void close() {
        err.close();
        driver.close();
        map.close();
        ram.close();
    }
}
