package io.jvhost.perf;

import io.jvhost.core.sys.CpuAffinity;
import io.jvhost.core.sys.NativeException;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * How far apart the frontend's and the backend's CPUs are right now: the round trip of a cache
 * line between two threads pinned to them. On a virtual machine the host may place the two vCPUs
 * on sibling hyperthreads, on cores of one socket or farther; a ping-pong that takes ~80 ns at one
 * moment can take ~430 ns at another, and a polling benchmark's rate falls to a third with it
 * (perf/RESULTS.md, 2026-12-06). Measured before every run, so that a slow run can be told from a
 * slow backend. Not thread-safe: one per benchmark.
 */
final class CpuRoundTrip {
    private static final int TRIPS = 200_000;
    private static final long GIVE_UP_NANOS = 1_000_000_000L;

    private final int cpuA, cpuB;
    /**
     * Per run, in run order: the round trip before it, and after it when measured, then the CPUs'
     * copy speeds before it ("81 (0.60/0.61)" or "81/430 (0.60/0.61)").
     */
    private final List<String> samples = new ArrayList<>();
    private double before = Double.NaN;
    /** The last sample's copy speeds as the summary shows them (" (0.60/0.61)"), or "" when not measured. */
    private String speedsBefore = "";

    CpuRoundTrip(int cpuA, int cpuB) {
        this.cpuA = cpuA;
        this.cpuB = cpuB;
    }

    /**
     * Measures before a run, remembers it, and returns it for the run's line, e.g. "CPUs 0-1 round
     * trip 81 ns, copy 0.60/0.61 ns/line": with each CPU's {@link CpuSpeed}, which the host changes
     * as independently of the placement.
     */
    String sample() throws InterruptedException {
        before = twice();
        double speedA = CpuSpeed.measure(cpuA), speedB = CpuSpeed.measure(cpuB);
        String perCpu = Double.isNaN(speedA) || Double.isNaN(speedB) ? null : String.format("%.2f/%.2f", speedA, speedB);
        String speeds = perCpu == null ? "" : ", copy " + perCpu + " ns/line";
        if (Double.isNaN(before)) {
            return "CPUs " + cpuA + "-" + cpuB + " round trip not measured" + speeds;
        }
        speedsBefore = perCpu == null ? "" : " (" + perCpu + ")";
        samples.add(String.format("%.0f", before) + speedsBefore);
        return String.format("CPUs %d-%d round trip %.0f ns%s", cpuA, cpuB, before, speeds);
    }

    /**
     * Measures again after the run and returns what to add to its line, e.g. ", 430 ns after: moved
     * during the run" (empty when not measured). The host can move the vCPUs in the middle of a run:
     * a run whose two round trips are far apart mixes both placements and compares with neither.
     */
    String after() throws InterruptedException {
        if (Double.isNaN(before)) {
            return "";
        }
        double ns = twice();
        if (Double.isNaN(ns)) {
            return "";
        }
        samples.set(samples.size() - 1, String.format("%.0f/%.0f", before, ns) + speedsBefore);
        return String.format(", %.0f ns after%s", ns, moved(before, ns) ? ": moved during the run" : "");
    }

    /** Whether two round trips are from different placements: one over twice the other. */
    static boolean moved(double a, double b) {
        return Math.max(a, b) > 2 * Math.min(a, b);
    }

    /** What the report's metadata keeps: each run's round trips in run order. */
    String summary() {
        return samples.isEmpty() ? "not measured" : samples
                + " ns, in run order, before/after each run (two threads pinned to the frontend's and the backend's CPU handing a cache line back and forth);"
                + " in parentheses each CPU's copy speed before the run, ns per 64-byte line (CpuSpeed)";
    }

    private double twice() throws InterruptedException {
        measure(cpuA, cpuB); // the first pass runs partly interpreted: it reads up to 4x high
        return measure(cpuA, cpuB);
    }

    /** Nanoseconds per round trip between threads on {@code a} and {@code b}; NaN when either cannot be pinned there or it takes over a second. */
    static double measure(int a, int b) throws InterruptedException {
        AtomicLong flag = new AtomicLong();
        boolean[] pinned = new boolean[2];
        Thread other = new Thread(() -> {
            pinned[1] = pin(b);
            for (long i = 0; i < TRIPS; i++) {
                long f;
                while ((f = flag.getAcquire()) != 2 * i + 1) {
                    if (f < 0) {
                        return;
                    }
                    Thread.onSpinWait();
                }
                flag.setRelease(2 * i + 2);
            }
        }, "jvhost-roundtrip");
        long[] took = new long[1];
        Thread self = new Thread(() -> {
            pinned[0] = pin(a);
            long start = System.nanoTime();
            for (long i = 0; i < TRIPS; i++) {
                flag.setRelease(2 * i + 1);
                while (flag.getAcquire() != 2 * i + 2) {
                    Thread.onSpinWait();
                }
                if ((i & 1023) == 0 && System.nanoTime() - start > GIVE_UP_NANOS) {
                    flag.setRelease(-1); // sharing one CPU (pinning refused): each trip costs a time slice
                    return;
                }
            }
            took[0] = System.nanoTime() - start;
        }, "jvhost-roundtrip");
        other.setDaemon(true);
        self.setDaemon(true);
        other.start();
        self.start();
        self.join();
        other.join();
        return pinned[0] && pinned[1] && took[0] > 0 ? (double) took[0] / TRIPS : Double.NaN;
    }

    private static boolean pin(int cpu) {
        BitSet one = new BitSet();
        one.set(cpu);
        try {
            CpuAffinity.set(0, one);
            return true;
        } catch (NativeException e) {
            return false; // not allowed there (cgroup cpuset): the result is not reported
        }
    }
}
