package io.jvhost.testkit;

import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.Mappings;
import io.jvhost.core.sys.NativeException;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What this process has open and mapped, read from {@code /proc/self}: the backend under test runs
 * in-process, so an fd it forgets to close, or a region it forgets to unmap, shows up here.
 *
 * <p>Fds that tests hand to the backend are best made {@link #probe() probes}: memfds with a name
 * nothing else uses, so the copies the backend received can be counted exactly (by link target),
 * whatever other threads open meanwhile. Any thread.
 */
public final class OpenFds {
    /** What an eventfd's {@code /proc/self/fd} link points to. */
    public static final String EVENTFD = "anon_inode:[eventfd]";
    private static final Path FD_DIR = Path.of("/proc/self/fd");
    private static final Path MAPS = Path.of("/proc/self/maps");
    private static final AtomicLong PROBES = new AtomicLong();

    private OpenFds() {
    }

    /** Every open fd and what it points to. The directory stream's own fd is left out. */
    public static Map<Integer, String> snapshot() {
        Map<Integer, String> fds = new TreeMap<>();
        List<Path> entries = new ArrayList<>();
        try (DirectoryStream<Path> dir = Files.newDirectoryStream(FD_DIR)) {
            dir.forEach(entries::add);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        for (Path p : entries) {
            try {
                fds.put(Integer.parseInt(p.getFileName().toString()), Files.readSymbolicLink(p).toString());
            } catch (IOException e) {
                // closed since the listing (including the listing's own directory fd)
            }
        }
        return fds;
    }

    /** How many fds are open. */
    public static int count() {
        return snapshot().size();
    }

    /** How many open fds point to a target containing {@code fragment} (e.g. a probe's name). */
    public static long countLinksTo(String fragment) {
        return snapshot().values().stream().filter(t -> t.contains(fragment)).count();
    }

    /** How many mappings in {@code /proc/self/maps} name a file containing {@code fragment}. */
    public static long mappingsOf(String fragment) {
        try {
            return Files.readAllLines(MAPS).stream().filter(l -> l.contains(fragment)).count();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * What kinds of fds {@code after} has more or fewer of than {@code before}, for failure
     * messages: targets are compared by kind (sockets and pipes without their inode numbers), since
     * fd numbers and socket inodes change from one connection to the next.
     */
    public static String difference(Map<Integer, String> before, Map<Integer, String> after) {
        Map<String, Integer> delta = new TreeMap<>();
        after.values().forEach(t -> delta.merge(kind(t), 1, Integer::sum));
        before.values().forEach(t -> delta.merge(kind(t), -1, Integer::sum));
        StringBuilder b = new StringBuilder();
        delta.forEach((kind, n) -> {
            if (n != 0) {
                b.append("\n  ").append(n > 0 ? "+" : "").append(n).append(' ').append(kind);
            }
        });
        return b.length() == 0 ? " (the same kinds of fds)" : b.toString();
    }

    private static String kind(String target) {
        return target.replaceFirst("^(socket|pipe):\\[\\d+\\]$", "$1");
    }

    /**
     * Waits until the set of open fds is back to {@code before} in number (asynchronous cleanup
     * may still be closing fds when this is called); fails with the difference otherwise.
     */
    public static void awaitCount(Map<Integer, String> before, Duration timeout) {
        Await.until(() -> "open fds back to " + before.size() + ", now " + count() + ":"
                + difference(before, snapshot()), () -> count() == before.size(), timeout);
    }

    /** A fresh one-page memfd named {@link Probe#name()}, unique in this process. */
    public static Probe probe() throws NativeException {
        return probe(4096);
    }

    /** A fresh memfd of {@code size} bytes with a unique name. */
    public static Probe probe(long size) throws NativeException {
        String name = "jvhost-probe-" + ProcessHandle.current().pid() + "-" + PROBES.incrementAndGet() + "-";
        return new Probe(name, Mappings.memfd(name, size));
    }

    /**
     * A memfd whose name only it has: {@link #openCopies()} counts every fd that refers to it,
     * ours included, and {@link #mappings()} every mapping of it in this process.
     */
    public record Probe(String name, Fd fd) implements AutoCloseable {
        public long openCopies() {
            return countLinksTo("/memfd:" + name);
        }

        public long mappings() {
            return mappingsOf("/memfd:" + name);
        }

        @Override
        public void close() {
            fd.close();
        }
    }
}
