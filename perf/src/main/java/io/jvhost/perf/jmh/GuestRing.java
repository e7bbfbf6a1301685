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
 * One split virtqueue without a socket, for benchmarks (as the core tests' RingFixture): guest RAM
 * in a memfd, mapped a second time through a {@link MemoryMap} as SET_MEM_TABLE would, a
 * {@link DriverQueue} for the guest's side and a {@link VirtQueue} on the translated rings.
 *
 * <p>The avail ring is written once with a fixed head per slot ({@link #fillAvail}), so the driver
 * recycles chains with a single release store of the avail index ({@link #makeAvailable}) and the
 * benchmark measures the device side only. Benchmark thread only.
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

    public GuestRing(int size, long ramSize) throws NativeException, InvalidMemoryException {
        this.size = size;
        this.ram = new GuestRam(ramSize);
        map.replace(List.of(new RegionSpec(0, ramSize, GuestRam.hva(0), 0)),
                new io.jvhost.core.sys.Fd[] {ram.fd().dup()});
        this.memory = map.current();
        this.driver = new DriverQueue(ram, 0, size);
        this.availRing = ram.at(driver.availHva() - GuestRam.HVA_BASE, 6 + 2L * size);
    }

    /** Points the queue at its rings (no event idx, indirect allowed, no call or err fd). */
    public GuestRing configure() {
        MemorySegment desc = memory.translateHva(driver.descHva(), 16L * size);
        MemorySegment avail = memory.translateHva(driver.availHva(), 6 + 2L * size);
        MemorySegment used = memory.translateHva(driver.usedHva(), 6 + 8L * size);
        queue.configure(size, desc, avail, used, memory, 0, false, true, -1);
        queue.callFd(-1);
        return this;
    }

    /**
     * Posts a receive buffer of {@code length} bytes (device-writable) in every descriptor, one
     * head per avail slot, and points the queue at its rings.
     */
    public GuestRing receiveBuffers(int length) {
        int[] heads = new int[size];
        for (int i = 0; i < size; i++) {
            heads[i] = i;
            driver.writeDescriptor(i, buffer(length), length, DriverQueue.F_WRITE, 0);
        }
        fillAvail(heads);
        return configure();
    }

    /** Writes every avail slot s with {@code heads[s % heads.length]}. */
    public void fillAvail(int[] heads) {
        for (int s = 0; s < size; s++) {
            availRing.set(U16, 4 + 2L * s, (short) heads[s % heads.length]);
        }
    }

    /** Makes the next {@code n} slots available: one release store of the avail index. */
    public void makeAvailable(int n) {
        driver.setAvailIdx(driver.availIdx() + n);
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
