package io.jvhost.perf;

import java.lang.management.ManagementFactory;

/**
 * Bytes allocated by this JVM's data-path threads (pollers, names containing {@code -poller-}, and
 * a store's I/O workers, {@code -io-}), from
 * {@link com.sun.management.ThreadMXBean#getThreadAllocatedBytes}: the drivers take a snapshot at
 * the start and end of the steady-state window (after a warm-up, so the JIT has compiled the data
 * path) and divide by the packets or requests handled.
 */
final class PollerAllocation {
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    private final long[] ids;
    private final long[] start;

    private PollerAllocation(long[] ids) {
        this.ids = ids;
        this.start = THREADS.getThreadAllocatedBytes(ids);
    }

    /** Starts counting for the live threads whose name contains any of {@code nameContains}. */
    static PollerAllocation start(String... nameContains) {
        if (!THREADS.isThreadAllocatedMemorySupported()) {
            return new PollerAllocation(new long[0]);
        }
        THREADS.setThreadAllocatedMemoryEnabled(true);
        long[] ids = Thread.getAllStackTraces().keySet().stream()
                .filter(t -> java.util.Arrays.stream(nameContains).anyMatch(t.getName()::contains))
                .mapToLong(Thread::threadId).toArray();
        return new PollerAllocation(ids);
    }

    int threads() {
        return ids.length;
    }

    /** Bytes the threads allocated since {@link #start}; -1 when not measurable. */
    long bytesSinceStart() {
        if (ids.length == 0) {
            return -1;
        }
        long[] now = THREADS.getThreadAllocatedBytes(ids);
        long sum = 0;
        for (int i = 0; i < ids.length; i++) {
            if (now[i] < 0 || start[i] < 0) {
                return -1;
            }
            sum += now[i] - start[i];
        }
        return sum;
    }

    /** Bytes per unit of work, or NaN. */
    static double perUnit(long bytes, long units) {
        return bytes < 0 || units <= 0 ? Double.NaN : (double) bytes / units;
    }
}
