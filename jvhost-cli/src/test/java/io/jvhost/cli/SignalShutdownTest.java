package io.jvhost.cli;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.testkit.FileBytes;
import io.jvhost.core.device.VirtioFeatures;

import java.io.RandomAccessFile;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

/**
 * SIGTERM and Ctrl-C (SIGINT) of the real CLI process, {@code jvhost blk --file}, with a frontend
 * that keeps 32 writes in flight: the backend stops taking requests, finishes and publishes the
 * ones it took, flushes the image and exits 0; a second signal during a shutdown that is waiting
 * for the storage ends the process at once with 128 + the signal's number.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class SignalShutdownTest {
    static final Duration START_TIMEOUT = Duration.ofSeconds(30), EXIT_TIMEOUT = Duration.ofSeconds(20);
    static final String READY = "Ctrl-C or SIGTERM stops";
    // virtio 1.2 §5.2.6, written out here rather than taken from the code under test.
    static final int T_OUT = 1, STATUS_OK = 0, BLOCK = 4096;
    static final byte UNWRITTEN = 0x7F;
    static final int QUEUE_SIZE = 32, WRITES = 4096, SIGNAL_AFTER = 300;
    /** VERSION_1, INDIRECT_DESC and FLUSH: a writeback cache, so the image is synced only at the end. */
    static final long FEATURES = VirtioFeatures.bit(VirtioFeatures.VERSION_1)
            | VirtioFeatures.bit(VirtioFeatures.RING_INDIRECT_DESC) | 1L << 9;
    static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @TempDir
    Path dir;
    private Process backend;

    @AfterEach
    void kill() {
        if (backend != null) {
            backend.destroyForcibly();
        }
    }

    /** Starts {@code mainClass} in a JVM of its own with this test's class path; returns once it said READY. */
    private Process start(Path log, String mainClass, String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"), mainClass));
        cmd.addAll(List.of(args));
        backend = new ProcessBuilder(cmd).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        awaitOutput(log, READY, START_TIMEOUT);
        return backend;
    }

    /** Waits until the process's output holds {@code text}; fails if it dies or times out first. */
    private void awaitOutput(Path log, String text, Duration timeout) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!Files.readString(log).contains(text)) {
            assertTrue(backend.isAlive(), "backend died before printing '" + text + "':\n" + Files.readString(log));
            assertTrue(System.nanoTime() < deadline, "no '" + text + "' within " + timeout + ":\n" + Files.readString(log));
            Thread.sleep(20);
        }
    }

    /** Sends SIG{@code name} to the backend, as kill(1) does. */
    private void signal(String name) throws Exception {
        Process kill = new ProcessBuilder("kill", "-s", name, String.valueOf(backend.pid())).inheritIO().start();
        assertEquals(0, kill.waitFor(), "kill -s " + name);
    }

    private static int signalNumber(String name) {
        return name.equals("TERM") ? 15 : 2;
    }

    /**
     * A background job of a non-interactive shell starts with SIGINT ignored, and the JVM then
     * leaves it ignored (no Ctrl-C in the background); the backend inherits this JVM's disposition.
     */
    private static void assumeSignalNotIgnored(String name) throws Exception {
        for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (line.startsWith("SigIgn:")) {
                long ignored = Long.parseUnsignedLong(line.substring(7).trim(), 16);
                assumeFalse((ignored & 1L << (signalNumber(name) - 1)) != 0,
                        "SKIPPED: SIG" + name + " is ignored in this test JVM, so it would be in the backend too");
            }
        }
    }

    /** One of the 32 request slots: its own descriptor head, indirect table, header, data and status byte. */
    private record Slot(int head, long table, long header, long data, long status) {}

    @ParameterizedTest(name = "SIG{0}")
    @ValueSource(strings = {"TERM", "INT"})
    void shouldFinishPublishAndFlushEveryWriteItTookAndExitZeroOnASignal(String sig) throws Exception {
        assumeSignalNotIgnored(sig);
        Path image = dir.resolve("disk.img"), socket = dir.resolve("blk.sock"), log = dir.resolve("backend.log");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength((long) WRITES * BLOCK);
        }
        start(log, Main.class.getName(), "blk", "--file", image.toString(), "--socket", socket.toString());

        boolean[] completed = new boolean[WRITES];
        int completions = 0, posted = 0, signalledAt = -1;
        try (GuestRam ram = new GuestRam(4 << 20); DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE);
             Frontend fe = Frontend.connect(socket, START_TIMEOUT.toMillis())) {
            long offered = fe.handshakeLikeQemu(1);
            assertEquals(FEATURES, offered & FEATURES, "features the test needs are offered");
            try (Frontend.Inflight inflight = fe.getInflightFd(1, QUEUE_SIZE)) {
                assertEquals(0, fe.setInflightFd(inflight));
                fe.startLikeQemu(FEATURES, ram, q);
                Slot[] slots = new Slot[QUEUE_SIZE];
                int[] writeIn = new int[QUEUE_SIZE];
                for (int s = 0; s < QUEUE_SIZE; s++) {
                    slots[s] = new Slot(s, ram.allocate(48, 16), ram.allocate(16, 16), ram.allocate(BLOCK, BLOCK),
                            ram.allocate(1, 1));
                    writeIn[s] = posted;
                    post(q, slots[s], posted++);
                }
                // Keep every slot busy: each completion is checked and its slot takes the next write,
                // until the backend has gone; the signal goes out once SIGNAL_AFTER writes completed.
                while (true) {
                    boolean alive = backend.isAlive(); // read before the ring: whatever the backend published is there now
                    for (Used u; (u = q.awaitUsed(Duration.ZERO)) != null; ) {
                        assertTrue(u.id() >= 0 && u.id() < QUEUE_SIZE, "used element names head " + u.id());
                        int w = writeIn[u.id()];
                        assertTrue(w >= 0, "head " + u.id() + " completed while not outstanding");
                        assertEquals(1, u.length(), "a write's used length is its status byte");
                        assertEquals(STATUS_OK, ram.at(slots[u.id()].status(), 1).get(ValueLayout.JAVA_BYTE, 0),
                                "status of write " + w);
                        completed[w] = true;
                        completions++;
                        writeIn[u.id()] = -1;
                        if (posted < WRITES && alive) {
                            writeIn[u.id()] = posted;
                            post(q, slots[u.id()], posted++);
                        }
                    }
                    if (!alive) {
                        break;
                    }
                    if (signalledAt < 0 && completions >= SIGNAL_AFTER) {
                        signalledAt = completions;
                        signal(sig);
                    }
                    Thread.onSpinWait();
                }
                assertTrue(signalledAt >= 0, "the backend exited before the signal:\n" + Files.readString(log));
                assertEquals(0, backend.exitValue(), "exit status after SIG" + sig + ":\n" + Files.readString(log));

                // The used ring is consistent: one element per completion, and the backend's used index
                // in the inflight region agrees with the ring's.
                assertEquals(completions & 0xFFFF, q.usedIdx(), "used elements published");
                byte[] region = FileBytes.read(inflight.fd(), 0, 16 + 16 * QUEUE_SIZE);
                ByteBuffer r = ByteBuffer.wrap(region).order(ByteOrder.LITTLE_ENDIAN);
                assertEquals(q.usedIdx(), Short.toUnsignedInt(r.getShort(14)), "used_idx in the inflight region");
                for (int head = 0; head < QUEUE_SIZE; head++) {
                    assertEquals(0, region[16 + 16 * head],
                            "head " + head + " still marked in flight: taken but never completed and published");
                }
            }
        }
        String output = Files.readString(log);
        assertTrue(output.contains(image + " flushed and closed"), "the image was synced at shutdown:\n" + output);

        // Every write the frontend saw completed is on the disk; none that it did not see complete
        // touched it (the backend took no request it did not finish).
        byte[] disk = Files.readAllBytes(image);
        for (int w = 0; w < posted; w++) {
            byte[] block = Arrays.copyOfRange(disk, w * BLOCK, (w + 1) * BLOCK);
            assertArrayEquals(completed[w] ? pattern(w) : new byte[BLOCK], block,
                    "block of write " + w + (completed[w] ? ", completed" : ", never completed"));
        }
        assertTrue(completions >= signalledAt, "completions " + completions + ", signal after " + signalledAt);
    }

    @ParameterizedTest(name = "SIG{0}")
    @ValueSource(strings = {"TERM", "INT"})
    void shouldExitAtOnceWithTheSignalsStatusOnASecondSignalWhileShutdownWaitsForStorage(String sig) throws Exception {
        assumeSignalNotIgnored(sig);
        Path socket = dir.resolve("blk.sock"), log = dir.resolve("backend.log");
        start(log, HeldWritesBackend.class.getName(), "--socket", socket.toString());
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE);
             Frontend fe = Frontend.connect(socket, START_TIMEOUT.toMillis())) {
            fe.startLikeQemu(fe.handshakeLikeQemu(1) & FEATURES, ram, q);
            post(q, new Slot(0, ram.allocate(48, 16), ram.allocate(16, 16), ram.allocate(BLOCK, BLOCK), ram.allocate(1, 1)), 0);
            awaitOutput(log, "HELD write", START_TIMEOUT);

            signal(sig);
            assertTrue(fe.isClosedByBackend(EXIT_TIMEOUT.toMillis()), "the first signal ends the session");
            assertTrue(backend.isAlive(), "shutdown waits for the write the store holds");
            assertEquals(0, q.usedIdx(), "the held write is not completed");

            signal(sig);
            assertTrue(backend.waitFor(EXIT_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS),
                    "the second signal ends the process without waiting for the store");
            assertEquals(128 + signalNumber(sig), backend.exitValue(), "exit status of a process ended by SIG" + sig);
            assertFalse(Files.readString(log).contains("still in the store after"),
                    "the process ended before blk's stop timeout gave up on the write");
        }
    }

    /** Puts write {@code w} (pattern {@code w} to block {@code w}) in {@code slot}, makes it available and kicks. */
    private static void post(DriverQueue q, Slot slot, int w) {
        GuestRam ram = q.ram();
        MemorySegment header = ram.at(slot.header(), 16);
        header.set(LE_INT, 0, T_OUT);
        header.set(LE_INT, 4, 0);
        header.set(LE_LONG, 8, (long) w * (BLOCK / 512));
        MemorySegment.copy(pattern(w), 0, ram.at(slot.data(), BLOCK), ValueLayout.JAVA_BYTE, 0, BLOCK);
        ram.at(slot.status(), 1).set(ValueLayout.JAVA_BYTE, 0, UNWRITTEN);
        q.writeIndirect(slot.table(), 0, slot.header(), 16, DriverQueue.F_NEXT, 1);
        q.writeIndirect(slot.table(), 1, slot.data(), BLOCK, DriverQueue.F_NEXT, 2);
        q.writeIndirect(slot.table(), 2, slot.status(), 1, DriverQueue.F_WRITE, 0);
        q.writeDescriptor(slot.head(), slot.table(), 48, DriverQueue.F_INDIRECT, 0);
        q.makeAvailable(slot.head());
        q.kick();
    }

    /** Write {@code w}'s 4 KiB: differs from every other write's. */
    private static byte[] pattern(int w) {
        ByteBuffer b = ByteBuffer.allocate(BLOCK).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < BLOCK / 8; i++) {
            b.putLong(((long) w << 32) | (i * 0x9E37L + 1));
        }
        return b.array();
    }
}
