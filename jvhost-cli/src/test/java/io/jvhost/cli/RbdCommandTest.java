package io.jvhost.cli;

import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.testkit.DevCeph;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code jvhost blk --rbd POOL/IMAGE} as a user runs it, in a process of its own against a real
 * cluster: it serves the image, and every way of getting the options or the cluster wrong ends in
 * one line on stderr that names the problem, a non-zero exit and no stack trace.
 */
@Tag("ceph")
@Timeout(value = 4, unit = TimeUnit.MINUTES)
class RbdCommandTest {
    static final Duration EXIT_TIMEOUT = Duration.ofSeconds(60);
    static final String READY = "Ctrl-C or SIGTERM stops";
    // virtio 1.2 §5.2.6, written out here rather than taken from the code under test.
    static final int T_OUT = 1, T_FLUSH = 4, STATUS_OK = 0;
    static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.VERSION_1) | 1L << 9;
    static DevCeph ceph;

    @TempDir
    Path dir;
    private Process backend;

    @BeforeAll
    static void cluster() throws Exception {
        ceph = DevCeph.start(RbdCommandTest.class);
        ceph.createImage("cli", 8 << 20);
    }

    @AfterAll
    static void stopCluster() throws Exception {
        if (ceph != null) {
            ceph.close();
        }
    }

    @AfterEach
    void kill() {
        if (backend != null) {
            backend.destroyForcibly();
        }
    }

    private record Run(int exit, String stdout, String stderr, long millis) {}

    private Process start(List<String> jvmOptions, List<String> args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED"));
        cmd.addAll(jvmOptions);
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Main.class.getName(), "blk",
                "--socket", dir.resolve("blk.sock").toString()));
        cmd.addAll(args);
        backend = new ProcessBuilder(cmd).redirectOutput(dir.resolve("stdout").toFile())
                .redirectError(dir.resolve("stderr").toFile()).start();
        return backend;
    }

    private Run run(List<String> jvmOptions, String... args) throws Exception {
        long t0 = System.nanoTime();
        Process p = start(jvmOptions, List.of(args));
        assertTrue(p.waitFor(EXIT_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS), "jvhost blk did not exit within " + EXIT_TIMEOUT);
        return new Run(p.exitValue(), Files.readString(dir.resolve("stdout")), Files.readString(dir.resolve("stderr")),
                TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
    }

    private Run run(String... args) throws Exception {
        return run(List.of(), args);
    }

    /** Non-zero exit, and stderr is exactly one line holding each of {@code words}, no stack trace. */
    private static void assertOneLineError(Run r, String... words) {
        assertNotEquals(0, r.exit(), "exit status; stderr:\n" + r.stderr());
        List<String> lines = r.stderr().lines().filter(l -> !l.isBlank()).toList();
        assertEquals(1, lines.size(), "one line on stderr:\n" + r.stderr());
        String line = lines.get(0);
        assertTrue(line.startsWith("jvhost blk: "), line);
        for (String w : words) {
            assertTrue(line.contains(w), "'" + w + "' in: " + line);
        }
        assertFalse(line.contains("Exception"), line);
        assertFalse(r.stdout().contains("listening"), "nothing was served:\n" + r.stdout());
    }

    @Test
    void shouldRefuseAnRbdArgumentThatIsNotPoolSlashImage() throws Exception {
        for (String bad : List.of("disk0", "rbd/", "/disk0", "rbd/ns/disk0", "rbd/disk0@snap")) {
            assertOneLineError(run("--rbd", bad, "--ceph-conf", ceph.conf().toString()), "POOL/IMAGE", "'" + bad + "'");
        }
    }

    @Test
    void shouldNameThePoolThatDoesNotExist() throws Exception {
        assertOneLineError(run("--rbd", "nopool/cli", "--ceph-conf", ceph.conf().toString()), "'nopool'", "no such pool");
    }

    @Test
    void shouldNameTheImageThatDoesNotExist() throws Exception {
        assertOneLineError(run("--rbd", "rbd/nothere", "--ceph-conf", ceph.conf().toString()), "'rbd/nothere'", "no such image");
    }

    @Test
    void shouldNameAMissingCephConf() throws Exception {
        Path missing = dir.resolve("no-such-ceph.conf");
        assertOneLineError(run("--rbd", "rbd/cli", "--ceph-conf", missing.toString()), missing.toString(), "no such file");
    }

    @Test
    void shouldGiveUpOnAnUnreachableMonitorAfterTheTimeoutInsteadOfHanging() throws Exception {
        // The cluster's own configuration, pointed at a port where no monitor listens.
        int port;
        try (java.net.ServerSocket s = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        Path conf = dir.resolve("unreachable.conf");
        Files.writeString(conf, Files.readString(ceph.conf()).replaceAll("(?m)^mon host = .*$", "mon host = v2:127.0.0.1:" + port));
        Run r = run("--rbd", "rbd/cli", "--ceph-conf", conf.toString(), "--ceph-timeout", "3");
        assertOneLineError(r, "no monitor answered within 3 s", "ETIMEDOUT");
        assertTrue(r.millis() < 30_000, "gave up after " + r.millis() + " ms");
    }

    @Test
    void shouldSayWhichPackageToInstallWhenLibrbdIsMissing() throws Exception {
        Run r = run(List.of("-Djvhost.librbd=libjvhost-no-such-librbd.so.1"), "--rbd", "rbd/cli",
                "--ceph-conf", ceph.conf().toString());
        assertOneLineError(r, "libjvhost-no-such-librbd.so.1", "apt-get install librbd1");
    }

    @Test
    void shouldServeTheImageAndFlushItWhenStoppedBySigterm() throws Exception {
        Path socket = dir.resolve("blk.sock");
        start(List.of(), List.of("--rbd", "rbd/cli", "--ceph-conf", ceph.conf().toString()));
        long deadline = System.nanoTime() + EXIT_TIMEOUT.toNanos();
        while (!Files.readString(dir.resolve("stdout")).contains(READY)) {
            assertTrue(backend.isAlive(), "backend died:\n" + Files.readString(dir.resolve("stderr")));
            assertTrue(System.nanoTime() < deadline, "not serving within " + EXIT_TIMEOUT);
            Thread.sleep(20);
        }
        byte[] data = new byte[64 << 10];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i * 31 + (i >>> 12));
        }
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Frontend fe = Frontend.connect(socket, 10_000)) {
            long offered = fe.handshakeLikeQemu(1);
            assertEquals(FEATURES, offered & FEATURES);
            fe.startLikeQemu(FEATURES, ram, q);
            long header = ram.allocate(16, 16), buf = ram.allocate(data.length, 4096), status = ram.allocate(1, 1);
            MemorySegment.copy(data, 0, ram.at(buf, data.length), ValueLayout.JAVA_BYTE, 0, data.length);
            for (int type : new int[] {T_OUT, T_FLUSH}) {
                byte[] h = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putInt(type).putInt(0).putLong(8).array();
                MemorySegment.copy(h, 0, ram.at(header, 16), ValueLayout.JAVA_BYTE, 0, 16);
                ram.at(status, 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x7F);
                if (type == T_OUT) {
                    q.post(Buffer.readable(header, 16), Buffer.readable(buf, data.length), Buffer.writable(status, 1));
                } else {
                    q.post(Buffer.readable(header, 16), Buffer.writable(status, 1));
                }
                Used u = q.awaitUsed(Duration.ofSeconds(20));
                assertNotNull(u, "request type " + type + " completed");
                assertEquals(STATUS_OK, ram.at(status, 1).get(ValueLayout.JAVA_BYTE, 0), "status of type " + type);
            }
            Process kill = new ProcessBuilder("kill", "-s", "TERM", String.valueOf(backend.pid())).inheritIO().start();
            assertEquals(0, kill.waitFor());
            assertTrue(backend.waitFor(EXIT_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS), "exits after SIGTERM");
        }
        assertEquals(0, backend.exitValue(), Files.readString(dir.resolve("stderr")));
        assertTrue(Files.readString(dir.resolve("stderr")).contains("rbd rbd/cli flushed and closed"),
                Files.readString(dir.resolve("stderr")));
        byte[] image = ceph.export("rbd/cli");
        assertEquals(8 << 20, image.length);
        assertArrayEquals(data, Arrays.copyOfRange(image, 8 * 512, 8 * 512 + data.length), "the write is in the cluster");
    }
}
