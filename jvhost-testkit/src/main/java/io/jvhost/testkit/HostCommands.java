package io.jvhost.testkit;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

/**
 * Host commands the network tests and benchmarks run to build their namespaces, links and
 * addresses ({@code ip ...}): each must succeed within 30 s, or the caller learns why.
 */
public final class HostCommands {
    private HostCommands() {
    }

    /** Runs {@code command}; its output (stdout and stderr), or an IOException with both when it fails. */
    public static String run(String... command) throws IOException, InterruptedException {
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(30, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new IOException(String.join(" ", command) + ": no exit within 30 s; " + out);
        }
        if (p.exitValue() != 0) {
            throw new IOException(String.join(" ", command) + ": exit " + p.exitValue() + ": " + out);
        }
        return out;
    }

    /** Runs the shell command {@code command} inside network namespace {@code ns}. */
    public static String runIn(String ns, String command) throws IOException, InterruptedException {
        return run("ip", "netns", "exec", ns, "sh", "-c", command);
    }

    /** Deletes network namespace {@code ns} if it exists (a leftover run's, or this run's at the end). */
    public static void deleteNamespace(String ns) throws IOException, InterruptedException {
        new ProcessBuilder("ip", "netns", "delete", ns).redirectErrorStream(true).start().waitFor(10, TimeUnit.SECONDS);
    }
}
