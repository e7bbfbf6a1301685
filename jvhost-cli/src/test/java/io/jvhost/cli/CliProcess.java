package io.jvhost.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The real CLI, {@code io.jvhost.cli.Main}, in a JVM of its own with this test's class path (so
 * that log lines, System.exit and the process's umask and capabilities are the real ones),
 * optionally behind a {@code prefix} command such as setpriv.
 */
final class CliProcess implements AutoCloseable {
    static final String READY = "Ctrl-C or SIGTERM stops";

    final Process process;
    final Path stdout, stderr;

    private CliProcess(Process process, Path stdout, Path stderr) {
        this.process = process;
        this.stdout = stdout;
        this.stderr = stderr;
    }

    /** What a finished run printed and returned. */
    record Outcome(int exit, String stdout, String stderr) {
        /**
         * The one line on stderr, after checking there is exactly one, that it names the command
         * and that no stack trace came with it.
         */
        String line(String command) {
            List<String> lines = stderr.lines().filter(l -> !l.isBlank()).toList();
            assertEquals(1, lines.size(), "exactly one line on stderr, got:\n" + stderr);
            assertFalse(stderr.contains("\tat ") || stderr.contains("Exception"), "no stack trace:\n" + stderr);
            assertTrue(lines.get(0).startsWith(command + ": "), lines.get(0));
            return lines.get(0);
        }
    }

    static List<String> javaCommand(List<String> prefix, String... args) {
        List<String> cmd = new ArrayList<>(prefix);
        cmd.addAll(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), Main.class.getName()));
        cmd.addAll(List.of(args));
        return cmd;
    }

    /** Starts the CLI with {@code args}; {@code env} is added to this JVM's environment. */
    static CliProcess start(Path dir, List<String> prefix, Map<String, String> env, String... args) throws IOException {
        Path out = Files.createTempFile(dir, "stdout", ".txt"), err = Files.createTempFile(dir, "stderr", ".txt");
        ProcessBuilder pb = new ProcessBuilder(javaCommand(prefix, args)).redirectOutput(out.toFile()).redirectError(err.toFile())
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        pb.environment().putAll(env);
        return new CliProcess(pb.start(), out, err);
    }

    /** Runs the CLI to its end (at most 60 s). */
    static Outcome run(Path dir, List<String> prefix, String... args) throws Exception {
        try (CliProcess p = start(dir, prefix, Map.of(), args)) {
            if (!p.process.waitFor(60, TimeUnit.SECONDS)) {
                throw new AssertionError("jvhost still running after 60 s: " + List.of(args));
            }
            return new Outcome(p.process.exitValue(), Files.readString(p.stdout, StandardCharsets.UTF_8),
                    Files.readString(p.stderr, StandardCharsets.UTF_8));
        }
    }

    static Outcome run(Path dir, String... args) throws Exception {
        return run(dir, List.of(), args);
    }

    /** Everything the process printed so far, stdout then stderr. */
    String output() throws IOException {
        return Files.readString(stdout) + Files.readString(stderr);
    }

    /** Waits until the process printed {@code text}; fails if it exits or the time runs out first. */
    CliProcess await(String text, Duration timeout) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!output().contains(text)) {
            assertTrue(process.isAlive(), "jvhost exited (" + (process.isAlive() ? "" : process.exitValue())
                    + ") before printing '" + text + "':\n" + output());
            assertTrue(System.nanoTime() < deadline, "no '" + text + "' within " + timeout + ":\n" + output());
            Thread.sleep(20);
        }
        return this;
    }

    /** Sends SIGTERM and waits for the exit; returns the exit code. */
    int terminate() throws Exception {
        process.destroy(); // SIGTERM
        assertTrue(process.waitFor(30, TimeUnit.SECONDS), "exit after SIGTERM:\n" + output());
        return process.exitValue();
    }

    @Override
    public void close() {
        process.destroyForcibly();
    }
}
