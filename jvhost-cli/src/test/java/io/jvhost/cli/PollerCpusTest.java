package io.jvhost.cli;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code --poller-cpus} pins each poller to its CPU and keeps the JVM's other threads off it, as
 * the kernel reports it in /proc; {@code --idle} takes the three modes and nothing else.
 */
class PollerCpusTest {
    @TempDir
    Path dir;

    /** Thread name (comm) and the CPUs it may run on, for every thread of {@code pid}. */
    private static List<String[]> threads(long pid) throws Exception {
        List<String[]> out = new ArrayList<>();
        try (Stream<Path> tasks = Files.list(Path.of("/proc", Long.toString(pid), "task"))) {
            for (Path t : tasks.toList()) {
                try {
                    String comm = Files.readString(t.resolve("comm")).strip();
                    String cpus = Files.readAllLines(t.resolve("status")).stream()
                            .filter(l -> l.startsWith("Cpus_allowed_list:")).findFirst().orElseThrow()
                            .substring("Cpus_allowed_list:".length()).strip();
                    out.add(new String[] {comm, cpus});
                } catch (java.nio.file.NoSuchFileException e) {
                    // the thread ended meanwhile
                }
            }
        }
        return out;
    }

    /** The CPUs of a list such as {@code 0,2-3}. */
    private static java.util.Set<Integer> cpus(String list) {
        java.util.Set<Integer> out = new java.util.HashSet<>();
        for (String part : list.split(",")) {
            String[] range = part.split("-");
            for (int c = Integer.parseInt(range[0]); c <= Integer.parseInt(range[range.length - 1]); c++) {
                out.add(c);
            }
        }
        return out;
    }

    @Test
    void shouldPinThePollerToItsCpuAndKeepEveryOtherThreadOffIt() throws Exception {
        Assumptions.assumeTrue(Runtime.getRuntime().availableProcessors() >= 2, "needs 2 CPUs");
        try (CliProcess p = CliProcess.start(dir, List.of(), Map.of(), "rng", "--socket", dir.resolve("rng.sock").toString(),
                "--poller-cpus", "1")) {
            p.await(CliProcess.READY, Duration.ofSeconds(60));
            p.await("pinned to CPU 1", Duration.ofSeconds(30));
            List<String[]> threads = threads(p.process.pid());
            boolean sawPoller = false;
            for (String[] t : threads) {
                if (t[0].equals("rng-poller-0")) {
                    sawPoller = true;
                    assertEquals("1", t[1], "the poller runs on CPU 1 alone");
                } else {
                    assertFalse(cpus(t[1]).contains(1), t[0] + " may still run on CPU 1: " + t[1]);
                }
            }
            assertTrue(sawPoller, "a thread named rng-poller-0 among " + threads.size());
            assertEquals(0, p.terminate());
        }
    }

    @Test
    void shouldRefuseACpuThisProcessCannotRunOnAndAnUnknownIdleModeInOneLine() throws Exception {
        CliProcess.Outcome cpu = CliProcess.run(dir, "rng", "--socket", dir.resolve("a.sock").toString(), "--poller-cpus", "4000");
        assertEquals(2, cpu.exit());
        assertTrue(cpu.line("jvhost rng").contains("--poller-cpus: CPU 4000"), cpu.stderr());
        CliProcess.Outcome idle = CliProcess.run(dir, "rng", "--socket", dir.resolve("b.sock").toString(), "--idle", "lazy");
        assertEquals(2, idle.exit());
        assertTrue(idle.line("jvhost rng").contains("adaptive, event and busy"), idle.stderr());
    }
}
