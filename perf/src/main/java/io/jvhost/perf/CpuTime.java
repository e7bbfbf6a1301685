package io.jvhost.perf;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The CPU time a backend spends, for the {@code cpu_ns/pkt} and {@code cpu_ns/req} columns: read
 * at the start and at the end of a measured window and divided by the packets or requests of that
 * window. Far less noisy than a rate on a shared machine, because time the backend spends waiting
 * for a CPU is not counted.
 *
 * <p>Two kinds: jvhost's data-path threads in this JVM (pollers, a store's I/O workers), through
 * {@link com.sun.management.ThreadMXBean#getThreadCpuTime(long[])}; and a whole external process
 * (DPDK's testpmd, qemu-storage-daemon), its user plus system time from {@code /proc/PID/stat},
 * every thread it has or had, in clock ticks of 10 ms. Driver thread only.
 */
final class CpuTime {
    /** Ticks per second of {@code /proc}'s utime and stime: USER_HZ, 100 in Linux's ABI on every architecture the JDK runs on. */
    static final long USER_HZ = 100;
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    private CpuTime() {
    }

    /** CPU time used so far by what a meter watches, in nanoseconds; -1 when it cannot be read. */
    @FunctionalInterface
    interface Meter {
        long nanos();

        /** A meter that never knows. */
        Meter NONE = () -> -1;
    }

    /**
     * The summed CPU time of this JVM's threads whose name contains one of {@code nameContains}, as
     * they are now (create it once the backend's threads have started). -1 when there are none,
     * when the JVM cannot measure thread CPU time, or when one of them has ended.
     */
    static Meter threads(String... nameContains) {
        if (!THREADS.isThreadCpuTimeSupported() || nameContains.length == 0) {
            return Meter.NONE;
        }
        THREADS.setThreadCpuTimeEnabled(true);
        long[] ids = Thread.getAllStackTraces().keySet().stream()
                .filter(t -> Arrays.stream(nameContains).anyMatch(t.getName()::contains))
                .mapToLong(Thread::threadId).toArray();
        if (ids.length == 0) {
            return Meter.NONE;
        }
        return () -> sum(THREADS.getThreadCpuTime(ids));
    }

    /** The user plus system time of process {@code pid} (all its threads, live and ended), from {@code /proc/PID/stat}. */
    static Meter process(long pid) {
        Path stat = Path.of("/proc", Long.toString(pid), "stat");
        return () -> {
            try {
                return ticksToNanos(statTicks(Files.readString(stat)));
            } catch (IOException | IllegalArgumentException e) {
                return -1; // the process has gone, or the file is not what Linux writes
            }
        };
    }

    /** This JVM's threads a {@link #tasks} meter watches, found anew at every reading. */
    @FunctionalInterface
    interface TaskIds {
        long[] now() throws IOException;
    }

    /**
     * The user plus system time (from {@code /proc/self/task/TID/stat}, in 10 ms ticks) of the
     * threads {@code ids} names at each reading; one that appears between two readings counts
     * from its start, one that ends between them loses what it ran since the first. For native
     * threads, which {@link #threads} cannot see and which come and go: librbd's messengers and
     * workers, and io_uring's {@code iou-wrk-*} workers, which the kernel starts in the submitting
     * process when a request cannot complete inline and stops once they idle. Not thread-safe.
     */
    static Meter tasks(TaskIds ids) {
        Map<Long, Long> seen = new HashMap<>();
        long[] total = {0};
        return () -> {
            try {
                for (long tid : ids.now()) {
                    long ticks;
                    try {
                        ticks = statTicks(Files.readString(Path.of("/proc/self/task", Long.toString(tid), "stat")));
                    } catch (IOException | IllegalArgumentException e) {
                        continue; // ended meanwhile
                    }
                    Long before = seen.put(tid, ticks);
                    total[0] += ticks - (before == null ? 0 : before);
                }
                return ticksToNanos(total[0]);
            } catch (IOException e) {
                return -1;
            }
        };
    }

    /** {@link #tasks} over the native threads started since {@code before} ({@link #nativeThreadsSince}). */
    static Meter nativeThreads(Set<Long> before) {
        return tasks(() -> nativeThreadsSince(before));
    }

    /** The sum of {@code meters}; -1 when one of them does not know. */
    static Meter sum(Meter... meters) {
        return () -> {
            long total = 0;
            for (Meter m : meters) {
                long n = m.nanos();
                if (n < 0) {
                    return -1;
                }
                total += n;
            }
            return total;
        };
    }

    /**
     * The JVM's own threads, by the prefix of their (15-character) {@code comm}: the JIT, the
     * collector, the VM thread, and Process's reaper (the bench's {@code taskset} runs start it).
     */
    private static final List<String> JVM_THREADS = List.of("C1 CompilerThre", "C2 CompilerThre", "GC Thread", "G1 ",
            "VM ", "process reaper", "Common-Cleaner", "Attach Listener", "Notification Th", "Signal Dispatch");

    /**
     * Threads of this JVM that are not in {@code before}, are no Java thread (no live Java thread
     * has their name) and are not the JVM's own: the native threads a store's library started since
     * {@code before} was taken ({@link Procs#taskIds}).
     */
    static long[] nativeThreadsSince(Set<Long> before) throws IOException {
        Set<String> javaNames = new java.util.HashSet<>();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            String n = t.getName();
            javaNames.add(n.length() > 15 ? n.substring(0, 15) : n);
        }
        List<Long> found = new ArrayList<>();
        for (long tid : Procs.taskIds()) {
            if (before.contains(tid)) {
                continue;
            }
            String comm;
            try {
                comm = Files.readString(Path.of("/proc/self/task", Long.toString(tid), "comm")).trim();
            } catch (IOException e) {
                continue; // ended meanwhile
            }
            if (!javaNames.contains(comm) && JVM_THREADS.stream().noneMatch(comm::startsWith)) {
                found.add(tid);
            }
        }
        return found.stream().mapToLong(Long::longValue).toArray();
    }

    /** Sum of per-thread times, or -1 if any is -1 (a thread that ended or cannot be measured). */
    static long sum(long[] nanos) {
        long total = 0;
        for (long n : nanos) {
            if (n < 0) {
                return -1;
            }
            total += n;
        }
        return total;
    }

    /**
     * utime + stime, in clock ticks, of one {@code /proc/PID/stat} (or {@code /proc/PID/task/TID/stat})
     * line: fields 14 and 15, counted after the command name, which is in parentheses and may itself
     * hold spaces and parentheses (so the fields start after the last ')').
     */
    static long statTicks(String stat) {
        int close = stat.lastIndexOf(')');
        if (close < 0) {
            throw new IllegalArgumentException("not a /proc stat line: " + stat);
        }
        // After ") ": field 3 (state) is index 0, so utime (field 14) is index 11 and stime index 12.
        String[] f = stat.substring(close + 1).trim().split("\\s+");
        if (f.length < 13) {
            throw new IllegalArgumentException("a /proc stat line with " + f.length + " fields after the name: " + stat);
        }
        try {
            return Math.addExact(Long.parseLong(f[11]), Long.parseLong(f[12]));
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("utime/stime are not counts: " + f[11] + " " + f[12], e);
        }
    }

    static long ticksToNanos(long ticks) {
        return ticks * (1_000_000_000L / USER_HZ);
    }

    /** {@code cpuNanos} per unit of work, or NaN when either is unknown ({@code cpuNanos < 0}) or there was no work. */
    static double perUnit(long cpuNanos, long units) {
        return cpuNanos < 0 || units <= 0 ? Double.NaN : (double) cpuNanos / units;
    }

    /**
     * The cores kept busy: {@code cpuNanos} of CPU time over {@code wallNanos} of wall time, read at
     * the same two moments; NaN when the CPU time is unknown or no time passed.
     */
    static double cores(long cpuNanos, long wallNanos) {
        return cpuNanos < 0 || wallNanos <= 0 ? Double.NaN : (double) cpuNanos / wallNanos;
    }

    /** CPU nanoseconds per packet for {@code cores} busy at a rate of {@code mpps} million packets per second; NaN without either. */
    static double perPacket(double cores, double mpps) {
        return Double.isNaN(cores) || !(mpps > 0) ? Double.NaN : cores * 1000 / mpps;
    }

    /** A meter's readings at the start and the end of a window. */
    static final class Window {
        private final Meter meter;
        private long begin = -1, end = -1;

        Window(Meter meter) {
            this.meter = meter;
        }

        void begin() {
            begin = meter.nanos();
            end = -1;
        }

        void end() {
            end = meter.nanos();
        }

        /** CPU nanoseconds between {@link #begin} and {@link #end}, or -1 when either reading failed. */
        long nanos() {
            return begin < 0 || end < 0 ? -1 : end - begin;
        }

        /** CPU nanoseconds per unit of work in the window, or NaN. */
        double per(long units) {
            return perUnit(nanos(), units);
        }
    }
}
