package io.jvhost.cli;

import io.jvhost.testkit.NbdServer;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code jvhost blk --nbd} when the export cannot be had: the real CLI ({@code Main} in a JVM of
 * its own) prints one line on stderr saying why, no stack trace, and exits non-zero, promptly.
 */
@Timeout(value = 3, unit = TimeUnit.MINUTES)
class BlkNbdErrorsTest {
    @TempDir
    Path dir;

    @BeforeAll
    static void tools() {
        NbdServer.require();
    }

    record Outcome(int exit, String stderr, long millis) {
        /** The one line printed, after checking there is exactly one and no stack trace. */
        String line() {
            List<String> lines = stderr.lines().filter(l -> !l.isBlank()).toList();
            assertEquals(1, lines.size(), "one line on stderr, got:\n" + stderr);
            assertFalse(stderr.contains("\tat ") || stderr.contains("Exception"), "no stack trace:\n" + stderr);
            assertTrue(lines.get(0).startsWith("jvhost blk: "), lines.get(0));
            return lines.get(0);
        }
    }

    private Outcome blk(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), "io.jvhost.cli.Main",
                "blk", "--socket", dir.resolve("blk.sock").toString()));
        cmd.addAll(List.of(args));
        Path err = dir.resolve("stderr.txt");
        long start = System.nanoTime();
        Process p = new ProcessBuilder(cmd).redirectError(err.toFile())
                .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("jvhost blk still running after 60 s: " + cmd);
        }
        return new Outcome(p.exitValue(), java.nio.file.Files.readString(err, StandardCharsets.UTF_8),
                (System.nanoTime() - start) / 1_000_000);
    }

    private Path image() throws IOException {
        Path p = dir.resolve("disk.img");
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(1 << 20);
        }
        return p;
    }

    @Test
    void shouldPrintOneLineForABadUri() throws Exception {
        Outcome o = blk("--nbd", "nbd+unix:///disk");
        assertNotEquals(0, o.exit());
        assertEquals("jvhost blk: bad NBD URI 'nbd+unix:///disk': missing ?socket=PATH", o.line());
    }

    @Test
    void shouldPrintOneLineForAnExportTheServerRefuses() throws Exception {
        try (NbdServer server = NbdServer.qemuNbdUnix(image(), dir.resolve("nbd.sock"), "disk")) {
            Outcome o = blk("--nbd", "nbd+unix:///nope?socket=" + server.socket());
            assertNotEquals(0, o.exit());
            assertTrue(o.line().contains("the server has no export 'nope'"), o.line());
        }
    }

    @Test
    void shouldPrintOneLineWhenNothingListens() throws Exception {
        Outcome o = blk("--nbd", "nbd://127.0.0.1:" + NbdServer.freePort() + "/disk");
        assertNotEquals(0, o.exit());
        assertTrue(o.line().contains("Connection refused"), o.line());
    }

    @Test
    void shouldGiveUpOnASilentServerWithinTheNbdTimeoutInsteadOfHanging() throws Exception {
        try (ServerSocket silent = new ServerSocket(0, 4, java.net.InetAddress.getLoopbackAddress())) {
            Thread.ofVirtual().start(() -> {
                try (Socket s = silent.accept()) {
                    s.getInputStream().read();
                } catch (IOException ignored) {
                    // the test closed it
                }
            });
            Outcome o = blk("--nbd", "nbd://127.0.0.1:" + silent.getLocalPort() + "/disk", "--nbd-timeout", "2");
            assertNotEquals(0, o.exit());
            assertTrue(o.line().contains("no NBD handshake from the server within 2000 ms"), o.line());
            assertTrue(o.millis() < 20_000, "took " + o.millis() + " ms");
        }
    }

    @Test
    void shouldPrintOneLineWhenTheTlsHandshakeFails() throws Exception {
        Path serverCreds = NbdServer.tlsCredentials(dir.resolve("server-creds"), false);
        Path otherCa = NbdServer.tlsCredentials(dir.resolve("other-ca"), false);
        try (NbdServer server = NbdServer.qemuNbdTcp(image(), 0, "disk", "--object",
                "tls-creds-x509,id=tls0,dir=" + serverCreds + ",endpoint=server", "--tls-creds=tls0")) {
            Outcome o = blk("--nbd", "nbds://127.0.0.1:" + server.port() + "/disk", "--tls-dir", otherCa.toString());
            assertNotEquals(0, o.exit());
            assertTrue(o.line().contains("TLS handshake failed"), o.line());
            Outcome plain = blk("--nbd", "nbd://127.0.0.1:" + server.port() + "/disk");
            assertTrue(plain.line().contains("requires TLS"), plain.line());
        }
    }
}
