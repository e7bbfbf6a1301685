package io.jvhost.perf;

import io.jvhost.core.sys.CpuAffinity;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.BitSet;

/**
 * How fast one CPU moves memory right now: nanoseconds per 64-byte line of copying 256 KiB (about
 * an L2 cache) again and again, on a thread pinned to it, best of five passes. On this shared
 * machine one vCPU can be ~1.4x slower than the other for minutes, whatever runs on it (the host's
 * load on the physical core under it, not visible from inside): on 2026-12-07 every LoopbackBench
 * fork pinned to CPU 0 read 67-93 ns/frame while CPU 0 copied at 0.65-0.88 ns/line, and every one
 * pinned to CPU 1 read 49-59 while CPU 1 copied at 0.59-0.63 (perf/RESULTS.md). Measured before
 * every run with the round trip, so that a slow run can be told from a slow backend.
 */
final class CpuSpeed {
    private static final long BYTES = 256 << 10;
    private static final int COPIES = 400, PASSES = 5;

    private CpuSpeed() {}

    /** Nanoseconds per 64-byte line copied on {@code cpu}; NaN when a thread cannot be pinned there. */
    static double measure(int cpu) throws InterruptedException {
        double[] best = {Double.NaN};
        Thread t = new Thread(() -> {
            BitSet one = new BitSet();
            one.set(cpu);
            try {
                CpuAffinity.set(0, one);
            } catch (NativeException e) {
                return; // not allowed there (cgroup cpuset): not reported
            }
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment a = arena.allocate(BYTES, 4096), b = arena.allocate(BYTES, 4096);
                a.fill((byte) 1);
                b.fill((byte) 2);
                double min = Double.MAX_VALUE;
                for (int p = 0; p < PASSES; p++) {
                    long t0 = System.nanoTime();
                    for (int i = 0; i < COPIES; i++) {
                        MemorySegment.copy(a, 0, b, 0, BYTES);
                    }
                    min = Math.min(min, (double) (System.nanoTime() - t0) / COPIES / (BYTES / 64));
                }
                best[0] = min;
            }
        }, "jvhost-cpuspeed");
        t.setDaemon(true);
        t.start();
        t.join();
        return best[0];
    }
}
