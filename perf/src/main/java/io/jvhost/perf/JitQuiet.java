package io.jvhost.perf;

import java.lang.management.CompilationMXBean;
import java.lang.management.ManagementFactory;

/**
 * The end of a warm-up: this JVM's JIT compilers have settled. Without it a target's first run in
 * the bench's JVM measures C1 and C2 compiling the paths it exercises, on the same two CPUs: on
 * 2026-12-07 a first NBD run at queue depth 32 read 25.7 k IOPS with a p99 of 5.4 ms and the next
 * two 29.6-30.6 k and 2.3 ms, while the compiler threads used 0.4-0.55 of a CPU for the first two
 * seconds of the first. Settled: the compilers spent at most {@link #QUIET_COMPILE_MILLIS} in a
 * {@link #QUIET_NANOS} window; never longer than {@link #MAX_NANOS} in all (a JVM that keeps
 * compiling is measured as it is, and the run says how long it warmed).
 */
final class JitQuiet {
    static final long QUIET_NANOS = 500_000_000L, MAX_NANOS = 10_000_000_000L;
    /** Compile time a quiet window may hold: 1 % of it (a C1 compile of some stray method). */
    static final long QUIET_COMPILE_MILLIS = 5;
    private static final CompilationMXBean JIT = ManagementFactory.getCompilationMXBean();

    private final long start;
    private long windowStart, compiledAtWindowStart;
    private boolean settled;

    /** Starts watching at {@code now} ({@link System#nanoTime()}). */
    JitQuiet(long now) {
        this.start = now;
        this.windowStart = now;
        this.compiledAtWindowStart = compileMillis();
    }

    /**
     * Whether the JIT has settled (or the longest warm-up has passed) by {@code now}. Cheap: reads
     * the compilers' time only once per window, so a polling loop may call it on every turn.
     */
    boolean settled(long now) {
        if (settled) {
            return true;
        }
        if (now - start >= MAX_NANOS) {
            return settled = true;
        }
        if (now - windowStart < QUIET_NANOS) {
            return false;
        }
        long compiled = compileMillis();
        settled = compiled - compiledAtWindowStart <= QUIET_COMPILE_MILLIS;
        windowStart = now;
        compiledAtWindowStart = compiled;
        return settled;
    }

    /** Sleeps until the JIT has settled. */
    static void await() throws InterruptedException {
        JitQuiet q = new JitQuiet(System.nanoTime());
        while (!q.settled(System.nanoTime())) {
            Thread.sleep(50);
        }
    }

    private static long compileMillis() {
        return JIT != null && JIT.isCompilationTimeMonitoringSupported() ? JIT.getTotalCompilationTime() : 0;
    }
}
