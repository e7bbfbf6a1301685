package io.jvhost.testkit;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

/**
 * What this process holds, read from {@code /proc/self}: open fds, mapped bytes and threads. A
 * backend under test runs in-process, so what its sessions forget to release shows up here.
 *
 * <ul>
 *   <li>{@code fds}: entries of {@code /proc/self/fd}.
 *   <li>{@code sharedBytes}: the sum of every {@code MAP_SHARED} range in {@code /proc/self/maps}
 *       (flag {@code s}): guest RAM, inflight regions and dirty logs are all shared memfd
 *       mappings, and the JVM itself has almost none, so this is the number a mapping leak moves.
 *   <li>{@code memfdBytes}: the part of {@code sharedBytes} mapped from memfds.
 *   <li>{@code mappedBytes}: every range, for the record; the JVM grows and shrinks its heap, code
 *       cache and malloc arenas on its own, so this one is reported, not compared.
 *   <li>{@code javaThreads}: live Java threads (every thread the backend starts is one); compared
 *       as "no more than at the start".
 *   <li>{@code tasks}: {@code /proc/self/task}, for the record; it also counts JIT compiler
 *       threads the JVM starts and retires on its own.
 * </ul>
 * Any thread.
 */
public record Footprint(int fds, long sharedBytes, long memfdBytes, long mappedBytes, int javaThreads, int tasks,
                        Map<String, Integer> threadNames) {
    private static final Path MAPS = Path.of("/proc/self/maps");
    private static final Path TASKS = Path.of("/proc/self/task");

    /** Reads the footprint now. */
    public static Footprint now() {
        long shared = 0, memfd = 0, mapped = 0;
        List<String> lines;
        try {
            lines = Files.readAllLines(MAPS);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        for (String line : lines) {
            // 7f12a0000000-7f12a4000000 rw-s 00000000 00:01 1234   /memfd:jvhost-guest-ram (deleted)
            int dash = line.indexOf('-'), space = line.indexOf(' ');
            long length = Long.parseUnsignedLong(line.substring(dash + 1, space), 16)
                    - Long.parseUnsignedLong(line.substring(0, dash), 16);
            mapped += length;
            if (line.charAt(space + 4) == 's') {
                shared += length;
                if (line.contains("/memfd:")) {
                    memfd += length;
                }
            }
        }
        int tasks;
        try (Stream<Path> s = Files.list(TASKS)) {
            tasks = (int) s.count();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        Map<String, Integer> names = new TreeMap<>();
        Thread.getAllStackTraces().keySet().forEach(t -> names.merge(kind(t.getName()), 1, Integer::sum));
        int javaThreads = names.values().stream().mapToInt(Integer::intValue).sum();
        return new Footprint(OpenFds.count(), shared, memfd, mapped, javaThreads, tasks, names);
    }

    /** Thread names without their trailing numbers, so "qemu-123-console" and "qemu-456-console" are one kind. */
    private static String kind(String name) {
        return name.replaceAll("\\d+", "#");
    }

    /**
     * Whether fds and shared mapped bytes equal {@code start}'s and there are no more Java threads
     * than then: a leaked thread only adds, while an idle pool thread of an earlier test in the
     * same JVM (Netty's globalEventExecutor, say) may retire in between.
     */
    public boolean sameAs(Footprint start) {
        return fds == start.fds && sharedBytes == start.sharedBytes && javaThreads <= start.javaThreads;
    }

    /**
     * Waits, up to {@code timeout}, until the footprint is {@link #sameAs} {@code start} (sessions
     * and threads end asynchronously), and returns it; fails with
     * both footprints and the fd and thread differences otherwise.
     */
    public static Footprint awaitReturnTo(Footprint start, Map<Integer, String> startFds, Duration timeout) {
        Footprint[] last = {now()};
        Await.until(() -> "footprint back to the start\n  start: " + start + "\n  now:   " + last[0]
                        + "\n  fd difference:" + OpenFds.difference(startFds, OpenFds.snapshot())
                        + "\n  thread difference: " + threadDifference(start, last[0]),
                () -> (last[0] = now()).sameAs(start), timeout);
        return last[0];
    }

    private static String threadDifference(Footprint a, Footprint b) {
        Map<String, Integer> d = new TreeMap<>(b.threadNames);
        a.threadNames.forEach((k, v) -> d.merge(k, -v, Integer::sum));
        d.values().removeIf(v -> v == 0);
        return d.toString();
    }

    /** One log line: {@code fds=.. sharedBytes=.. memfdBytes=.. mappedBytes=.. javaThreads=.. tasks=..}. */
    @Override
    public String toString() {
        return "fds=" + fds + " sharedBytes=" + sharedBytes + " memfdBytes=" + memfdBytes + " mappedBytes=" + mappedBytes
                + " javaThreads=" + javaThreads + " tasks=" + tasks;
    }
}
