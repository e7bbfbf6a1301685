package io.jvhost.perf;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * External processes and CPU pinning for the drivers, with every command recorded as it was run
 * (for the report). Driver thread only.
 */
final class Procs {
    private final List<String> commands = new ArrayList<>();

    /** The commands run so far, one shell-quoted line each. */
    List<String> commands() {
        return commands;
    }

    /** Records a line that is not a process we started (an in-process equivalent, a note). */
    void note(String line) {
        commands.add(line);
    }

    /** Starts {@code cmd} with stdout and stderr in {@code log}. */
    Process start(List<String> cmd, Path log) throws IOException {
        commands.add(quote(cmd) + " > " + log.getFileName() + " 2>&1");
        return new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    /** Runs {@code cmd} to completion (at most 30 s); returns its output. */
    String run(List<String> cmd) throws IOException, InterruptedException {
        commands.add(quote(cmd));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        if (!p.waitFor(30, TimeUnit.SECONDS)) {
            p.destroyForcibly();
        }
        return new String(out, StandardCharsets.UTF_8);
    }

    /** SIGTERM (testpmd prints its totals on it), then SIGKILL after {@code graceSeconds}. */
    static void stop(Process p, int graceSeconds) throws InterruptedException {
        if (p == null || !p.isAlive()) {
            return;
        }
        p.destroy();
        if (!p.waitFor(graceSeconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            p.waitFor(5, TimeUnit.SECONDS);
        }
    }

    /**
     * Pins every thread of this JVM whose name contains {@code nameContains} to {@code cpu} with
     * {@code taskset -pc}; returns how many. Linux shows Java thread names (15 chars) in
     * /proc/self/task/TID/comm.
     */
    int pinThreads(String nameContains, int cpu) throws IOException, InterruptedException {
        int n = 0;
        for (long tid : threadIds(nameContains)) {
            run(List.of("taskset", "-pc", Integer.toString(cpu), Long.toString(tid)));
            n++;
        }
        return n;
    }

    /**
     * As {@link #pinThreads}, but first waits up to {@code timeoutMillis} for such a thread: a new
     * Java thread sets its {@code comm} itself, a moment after {@code start()} returned.
     */
    int awaitAndPinThreads(String nameContains, int cpu, long timeoutMillis) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + timeoutMillis * 1_000_000;
        while (threadIds(nameContains).isEmpty() && System.nanoTime() < deadline) {
            Thread.sleep(1);
        }
        return pinThreads(nameContains, cpu);
    }

    /** Pins this JVM's threads {@code tids} to {@code cpu}, as {@link #pinThreads} does by name. */
    void pinTasks(long[] tids, int cpu) throws IOException, InterruptedException {
        for (long tid : tids) {
            run(List.of("taskset", "-pc", Integer.toString(cpu), Long.toString(tid)));
        }
    }

    /** Pins every thread of process {@code pid} (taskset -a) to {@code cpu}. */
    void pinProcess(long pid, int cpu) throws IOException, InterruptedException {
        run(List.of("taskset", "-a", "-pc", Integer.toString(cpu), Long.toString(pid)));
    }

    /** The names ({@code comm}) of this JVM's threads {@code tids}, space-separated. */
    static String comms(long[] tids) {
        StringBuilder b = new StringBuilder();
        for (long tid : tids) {
            try {
                b.append(b.length() == 0 ? "" : " ").append(Files.readString(Path.of("/proc/self/task", Long.toString(tid), "comm")).trim());
            } catch (IOException e) {
                // ended meanwhile
            }
        }
        return b.toString();
    }

    /** Native thread ids of every thread of this JVM now. */
    static java.util.Set<Long> taskIds() throws IOException {
        java.util.Set<Long> ids = new java.util.HashSet<>();
        try (var tasks = Files.list(Path.of("/proc/self/task"))) {
            for (Path t : (Iterable<Path>) tasks::iterator) {
                ids.add(Long.parseLong(t.getFileName().toString()));
            }
        }
        return ids;
    }

    /** Native thread ids of this JVM's threads whose name contains {@code nameContains}. */
    static List<Long> threadIds(String nameContains) throws IOException {
        List<Long> ids = new ArrayList<>();
        try (var tasks = Files.list(Path.of("/proc/self/task"))) {
            for (Path t : (Iterable<Path>) tasks::iterator) {
                try {
                    String comm = Files.readString(t.resolve("comm")).trim();
                    if (comm.contains(nameContains)) {
                        ids.add(Long.parseLong(t.getFileName().toString()));
                    }
                } catch (IOException e) {
                    // the thread ended meanwhile
                }
            }
        }
        return ids;
    }

    /** Waits until {@code path} exists; false on timeout or when {@code p} died. */
    static boolean awaitFile(Path path, Process p, long timeoutMillis) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMillis;
        while (System.currentTimeMillis() < deadline) {
            if (Files.exists(path)) {
                return true;
            }
            if (p != null && !p.isAlive()) {
                return false;
            }
            Thread.sleep(20);
        }
        return Files.exists(path);
    }

    static String tail(Path log, int chars) {
        try {
            String s = Files.readString(log, StandardCharsets.UTF_8);
            return s.substring(Math.max(0, s.length() - chars));
        } catch (IOException e) {
            return "(no log: " + e.getMessage() + ")";
        }
    }

    static String quote(List<String> cmd) {
        StringBuilder b = new StringBuilder();
        for (String a : cmd) {
            if (b.length() > 0) {
                b.append(' ');
            }
            b.append(a.matches("[A-Za-z0-9_./=,:@+%-]+") ? a : "'" + a.replace("'", "'\\''") + "'");
        }
        return b.toString();
    }
}
