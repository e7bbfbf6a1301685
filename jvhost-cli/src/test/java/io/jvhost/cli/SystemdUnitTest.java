package io.jvhost.cli;

import io.jvhost.testkit.QemuConfigs;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import picocli.CommandLine.ParseResult;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * qemu-configs/jvhost-blk@.service is a Type=notify unit (jvhost sends READY=1 once the socket
 * listens: {@link SystemdNotifyTest}) whose ExecStart is a command line the CLI takes, with the
 * socket under the unit's RuntimeDirectory; and systemd itself finds nothing to warn about.
 */
class SystemdUnitTest {
    @TempDir
    Path dir;

    private static String unit() throws Exception {
        return Files.readString(QemuConfigs.root().resolve("qemu-configs").resolve("jvhost-blk@.service"));
    }

    private static String value(String unit, String key) {
        return unit.lines().filter(l -> l.startsWith(key + "=")).map(l -> l.substring(key.length() + 1))
                .findFirst().orElseThrow(() -> new AssertionError("no " + key + "= in the unit"));
    }

    @Test
    void shouldStartJvhostBlkAsANotifyServiceWithTheSocketInItsRuntimeDirectory() throws Exception {
        String unit = unit();
        assertEquals("notify", value(unit, "Type"));
        assertEquals("main", value(unit, "NotifyAccess"), "the launcher execs java: the main process notifies");
        assertEquals("jvhost", value(unit, "RuntimeDirectory"));
        List<String> exec = new ArrayList<>(Arrays.asList(value(unit, "ExecStart").replace("%i", "vm1").split(" ")));
        assertEquals("/opt/jvhost/jvhost", exec.remove(0));
        ParseResult parsed = Main.commandLine().parseArgs(exec.toArray(String[]::new));
        ParseResult blk = parsed.subcommand();
        assertEquals("blk", blk.commandSpec().name());
        assertEquals(List.of(Path.of("/run/jvhost/vm1.sock")), blk.matchedOptionValue("--socket", List.of()));
        assertEquals("kvm", blk.matchedOptionValue("--socket-group", ""));
        assertEquals(List.of("root", "libvirt-qemu"), blk.matchedOptionValue("--allow-uid", List.of()));
    }

    @Test
    void shouldPassSystemdAnalyzeVerify() throws Exception {
        Path analyze = Path.of("/usr/bin/systemd-analyze");
        if (!Files.isExecutable(analyze)) {
            System.err.println("SKIPPED systemd-analyze verify of jvhost-blk@.service: no systemd-analyze");
            return;
        }
        // An instance of the template, with ExecStart pointing at this checkout's launcher (which exists).
        Path instance = dir.resolve("jvhost-blk@vm1.service");
        Files.writeString(instance, unit().replace("/opt/jvhost/jvhost", QemuConfigs.root().resolve("jvhost").toString()));
        Process p = new ProcessBuilder(analyze.toString(), "verify", instance.toString()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), out);
        assertEquals("", out.strip(), "no warnings");
    }
}
