package io.jvhost.perf.jmh;

import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.memory.MemoryMap;
import io.jvhost.core.memory.MemoryMap.RegionSpec;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.TearDown;

/**
 * Guest address translation: {@link GuestMemory#regionOf} (binary search plus the overflow-safe
 * range check) and {@link GuestMemory#translate} (the same plus a slice) for 64-byte buffers at
 * random addresses, over tables of 1, 8 (SET_MEM_TABLE's maximum) and 509 regions (the
 * CONFIGURE_MEM_SLOTS maximum, mapped with ADD_MEM_REG as QEMU does for DIMMs / virtio-mem).
 */
public class TranslateBench extends NanosPerOp {
    static final long REGION_SIZE = 64 << 10;
    static final int ADDRESSES = 4096;

    @Param({"1", "8", "509"})
    public int regions;

    private GuestRam ram;
    private MemoryMap map;
    private GuestMemory memory;
    private final long[] gpas = new long[ADDRESSES];
    private int next;

    @Setup(Level.Trial)
    public void setUp() throws Exception {
        ram = new GuestRam(REGION_SIZE * regions);
        map = new MemoryMap();
        for (int r = 0; r < regions; r++) {
            long gpa = r * REGION_SIZE;
            map.add(new RegionSpec(gpa, REGION_SIZE, GuestRam.hva(gpa), gpa), ram.fd().dup());
        }
        memory = map.current();
        if (memory.regionCount() != regions) {
            throw new IllegalStateException(memory.regionCount() + " regions mapped");
        }
        SplittableRandom random = new SplittableRandom(42);
        for (int i = 0; i < ADDRESSES; i++) {
            gpas[i] = random.nextInt(regions) * REGION_SIZE + random.nextLong(REGION_SIZE - 64);
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        map.close();
        ram.close();
    }

    @Benchmark
    public int regionOf() {
        long gpa = gpas[next++ & (ADDRESSES - 1)];
        return memory.regionOf(gpa, 64);
    }

    @Benchmark
    public MemorySegment translate() {
        long gpa = gpas[next++ & (ADDRESSES - 1)];
        return memory.translate(gpa, 64);
    }
}
