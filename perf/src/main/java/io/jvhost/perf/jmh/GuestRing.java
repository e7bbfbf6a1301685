package io.jvhost.perf.jmh;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.memory.InvalidMemoryException;
import io.jvhost.core.memory.MemoryMap;
import io.jvhost.core.memory.MemoryMap.RegionSpec;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.ring.VirtQueue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.List;

/**
 * One virtqueue without a socket, for benchmarks (as the core tests' RingFixture): guest RAM in a
 * memfd, mapped a second time through a {@link MemoryMap} as SET_MEM_TABLE would, a
 * {@link DriverQueue} for the guest's side and a {@link VirtQueue} on the translated rings.
 *
 * <p>Split ({@link #GuestRing(int, long)}): the avail ring is written once with a fixed head per
 * slot ({@link #fillAvail}), so the driver recycles chains with a single release store of the avail
 * index ({@link #makeAvailable}) and the benchmark measures the device side only. Packed
 * ({@link #packed}): buffer id = ring slot; the driver makes a slot available
 * again with two stores, its length (the device overwrote it with the used length) and its flags,
 * about what DPDK's virtio driver does when it refills. Benchmark thread only.
 */
public final class GuestRing implements AutoCloseable {
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);

    public final int size;
    public final GuestRam ram;
    public final MemoryMap map = new MemoryMap();
    public final GuestMemory memory;
    public final DriverQueue driver;
    public final VirtQueue queue = new VirtQueue(0);
    private final MemorySegment availRing;
    /** Packed: the descriptor ring as the driver writes it, where it makes the next slot available, and each slot's length. */
    private final MemorySegment descRing;
    private int driverPos, driverWrap = 1;
    /** Packed: the length and the flag besides AVAIL/USED (F_WRITE or none) each slot is made available with. */
    private int slotLength, slotWrite;

    /** A split queue of {@code size} in {@code ramSize} bytes of guest RAM. */
    public GuestRing(int size, long ramSize) throws NativeException, InvalidMemoryException {
        this(size, ramSize, DriverQueue.Layout.SPLIT);
    }

    /** A packed queue of {@code size} in {@code ramSize} bytes of guest RAM; for {@link #receiveBuffers(int, int)}. */
    public static GuestRing packed(int size, long ramSize) throws NativeException, InvalidMemoryException {
        return new GuestRing(size, ramSize, DriverQueue.Layout.PACKED);
    }

    private GuestRing(int size, long ramSize, DriverQueue.Layout layout) throws NativeException, InvalidMemoryException {
        this.size = size;
        this.ram = new GuestRam(ramSize);
        map.replace(List.of(new RegionSpec(0, ramSize, GuestRam.hva(0), 0)),
                new io.jvhost.core.sys.Fd[] {ram.fd().dup()});
        this.memory = map.current();
        this.driver = new DriverQueue(ram, 0, size, layout);
        boolean packed = layout == DriverQueue.Layout.PACKED;
        this.availRing = packed ? null : ram.at(driver.availHva() - GuestRam.HVA_BASE, 6 + 2L * size);
        this.descRing = packed ? ram.at(driver.descHva() - GuestRam.HVA_BASE, 16L * size) : null;
    }

    /** Points the queue at its rings (no event idx, indirect allowed, no call or err fd). */
    public GuestRing configure() {
        return configure(VirtQueue.INDIRECT);
    }

    /**
     * Points the queue at its rings with the ring features {@code options} ({@link VirtQueue#EVENT_IDX},
     * {@link VirtQueue#INDIRECT}, {@link VirtQueue#IN_ORDER}; {@link VirtQueue#PACKED} is added for a
     * packed queue), at a fresh base, no call or err fd.
     */
    public GuestRing configure(int options) {
        MemorySegment desc = memory.translateHva(driver.descHva(), 16L * size);
        if (driver.isPacked()) {
            MemorySegment driverArea = memory.translateHva(driver.availHva(), 4);
            MemorySegment deviceArea = memory.translateHva(driver.usedHva(), 4);
            queue.configure(size, desc, driverArea, deviceArea, memory, 0x8000_8000L, options | VirtQueue.PACKED, -1);
        } else {
            MemorySegment avail = memory.translateHva(driver.availHva(), 6 + 2L * size);
            MemorySegment used = memory.translateHva(driver.usedHva(), 6 + 8L * size);
            queue.configure(size, desc, avail, used, memory, 0, options, -1);
        }
        queue.callFd(-1);
        return this;
    }

    /**
     * Posts a receive buffer of {@code length} bytes (device-writable) in every descriptor, one
     * head per avail slot, and points the queue at its rings.
     */
    public GuestRing receiveBuffers(int length) {
        return receiveBuffers(length, VirtQueue.INDIRECT);
    }

    /**
     * Like {@link #receiveBuffers(int)}, with the ring features {@code options} (see
     * {@link #configure(int)}). Packed: every slot gets its buffer and id (= slot), none is made
     * available yet, and the driver asks for no interrupts (event flags DISABLE, as DPDK's does).
     */
    public GuestRing receiveBuffers(int length, int options) {
        return buffers(length, null, options);
    }

    /**
     * Like {@link #receiveBuffers(int, int)} for a transmit queue: every slot gets its own buffer of
     * {@code contents.length} bytes holding {@code contents} (a virtio-net header and a frame), readable.
     */
    public GuestRing transmitBuffers(byte[] contents, int options) {
        return buffers(contents.length, contents, options);
    }

    private GuestRing buffers(int length, byte[] contents, int options) {
        int flags = contents == null ? DriverQueue.F_WRITE : 0;
        long[] gpas = new long[size];
        for (int i = 0; i < size; i++) {
            gpas[i] = buffer(length);
            if (contents != null) {
                MemorySegment.copy(MemorySegment.ofArray(contents), 0, ram.at(gpas[i], length), 0, length);
            }
        }
        if (driver.isPacked()) {
            slotLength = length;
            slotWrite = flags;
            for (int s = 0; s < size; s++) {
                descRing.set(DriverQueue.U64, 16L * s, gpas[s]);
                descRing.set(DriverQueue.U32, 16L * s + 8, length);
                descRing.set(DriverQueue.U16, 16L * s + 12, (short) s);
            }
            driver.setNoInterrupt(true);
            return configure(options);
        }
        int[] heads = new int[size];
        for (int i = 0; i < size; i++) {
            heads[i] = i;
            driver.writeDescriptor(i, gpas[i], length, flags, 0);
        }
        fillAvail(heads);
        return configure(options);
    }

    /** Writes every avail slot s with {@code heads[s % heads.length]}. */
    public void fillAvail(int[] heads) {
        for (int s = 0; s < size; s++) {
            availRing.set(U16, 4 + 2L * s, (short) heads[s % heads.length]);
        }
    }

    /**
     * Makes the next {@code n} slots available: split, one release store of the avail index;
     * packed, per slot its receive length and id again and its flags (the head's with a release store).
     */
    public void makeAvailable(int n) {
        if (descRing == null) {
            driver.setAvailIdx(driver.availIdx() + n);
            return;
        }
        int head = driverPos, headFlags = 0;
        for (int i = 0; i < n; i++) {
            long d = 16L * driverPos;
            descRing.set(DriverQueue.U32, d + 8, slotLength);
            descRing.set(DriverQueue.U16, d + 12, (short) driverPos);
            int flags = slotWrite | DriverQueue.availableFlags(driverWrap);
            if (i == 0) {
                headFlags = flags;
            } else {
                descRing.set(DriverQueue.U16, d + 14, (short) flags);
            }
            if (++driverPos == size) {
                driverPos = 0;
                driverWrap ^= 1;
            }
        }
        DriverQueue.U16_VH.setRelease(descRing, 16L * head + 14, (short) headFlags);
    }

    /** A fresh buffer of {@code length} bytes in guest RAM; returns its gpa. */
    public long buffer(int length) {
        return ram.allocate(length, 64);
    }

    @Override
    public void close() {
        driver.close();
        map.close();
        ram.close();
    }
}
