package io.jvhost.testkit;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Reads the QEMU device arguments that a script in {@code qemu-configs/} gives users, so the
 * end-to-end tests boot their guests with exactly what the documentation hands out.
 */
public final class QemuConfigs {
    private QemuConfigs() {}

    /** The repository root: the first parent of the working directory with {@code qemu-configs/}. */
    public static Path root() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolve("qemu-configs"))) {
                return p;
            }
        }
        throw new IllegalStateException("no qemu-configs/ above " + Path.of("").toAbsolutePath());
    }

    /** Runs {@code qemu-configs/<script> --device-args <args...>} and returns its lines. */
    public static List<String> deviceArgs(String script, String... args) throws IOException, InterruptedException {
        return deviceArgs(false, script, args);
    }

    /**
     * As {@link #deviceArgs(String, String...)}, with {@code PACKED=on} in the script's environment
     * when {@code packed}: the device on packed virtqueues, as the scripts document.
     */
    public static List<String> deviceArgs(boolean packed, String script, String... args)
            throws IOException, InterruptedException {
        List<String> command = new ArrayList<>(List.of("bash", root().resolve("qemu-configs").resolve(script).toString(),
                "--device-args"));
        command.addAll(List.of(args));
        ProcessBuilder b = new ProcessBuilder(command).redirectErrorStream(true);
        b.environment().remove("PACKED");
        if (packed) {
            b.environment().put("PACKED", "on");
        }
        Process p = b.start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
            throw new IOException(script + " --device-args failed: " + out);
        }
        return out.lines().filter(l -> !l.isBlank()).toList();
    }
}
