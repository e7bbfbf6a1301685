package io.jvhost.blk;

import io.jvhost.blk.nbd.NbdStore;
import io.jvhost.blk.nbd.NbdUri;
import io.jvhost.testkit.Await;
import io.jvhost.testkit.NbdServer;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static io.jvhost.blk.BlkRig.*;
import static io.jvhost.blk.NbdStoreTest.MIB;
import static io.jvhost.blk.NbdStoreTest.fileBytes;
import static io.jvhost.blk.NbdStoreTest.image;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * qemu-nbd killed (SIGKILL) under the store while the guest writes: within the timeout the guest
 * sees nothing but a pause; past it, I/O errors, and service again once the server is back.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class NbdReconnectTest {
    static final int LENGTH = 64 << 10;

    @TempDir
    Path dir;

    @BeforeAll
    static void tools() {
        NbdServer.require();
    }

    /** Posts a write of pattern(LENGTH, sector) at {@code sector}; returns the status byte's address. */
    private static long postWrite(BlkRig rig, long sector) {
        BlkRig.Area a = rig.area(LENGTH + 512);
        long header = a.header(OUT, sector);
        long data = a.put(pattern(LENGTH, (int) sector));
        long status = a.status();
        rig.post(0, Buffer.readable(header, 16), Buffer.readable(data, LENGTH), Buffer.writable(status, 1));
        return status;
    }

    /** qemu-nbd serving {@code image} as export "disk" on a Unix socket in the test's directory. */
    private NbdServer server(Path image) throws Exception {
        return NbdServer.qemuNbdUnix(image, dir.resolve("nbd.sock"), "disk");
    }

    private static NbdStore.Options options(NbdServer server) {
        return NbdStore.Options.of(NbdUri.parse("nbd+unix:///disk?socket=" + server.socket()), null);
    }

    private static Map<Integer, Integer> awaitUsed(BlkRig rig, int count, Duration timeout) {
        Map<Integer, Integer> done = new HashMap<>();
        for (int i = 0; i < count; i++) {
            Used used = rig.queue(0).awaitUsed(timeout);
            assertNotNull(used, "only " + i + " of " + count + " completions within " + timeout);
            assertNull(done.put(used.id(), used.length()), "chain " + used.id() + " completed twice");
        }
        return done;
    }

    private static int status(BlkRig rig, long statusGpa) {
        return Byte.toUnsignedInt(rig.ram.at(statusGpa, 1).get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0));
    }

    @Test
    void shouldFinishEveryWriteWithoutAnErrorWhenTheServerIsBackWithinTheTimeout() throws Exception {
        Path image = image(dir, "disk.img", 32 * MIB);
        try (NbdServer server = server(image)) {
            NbdStore store = NbdStore.open(options(server));
            try (BlkRig rig = BlkRig.serve(store, 1).start()) {
                List<Long> statuses = new ArrayList<>();
                int writes = 0;
                // Writes in flight while the server dies, and more posted while it is away.
                for (; writes < 40; writes++) {
                    statuses.add(postWrite(rig, (long) writes * (LENGTH / 512)));
                }
                server.kill();
                for (; writes < 80; writes++) {
                    statuses.add(postWrite(rig, (long) writes * (LENGTH / 512)));
                }
                Await.until("the store noticed the server went away", () -> !store.connected());
                Thread.sleep(700);
                server.start();
                awaitUsed(rig, writes, Duration.ofSeconds(20));
                for (int i = 0; i < writes; i++) {
                    assertEquals(OK, status(rig, statuses.get(i)), "status of write " + i);
                }
                assertTrue(store.reconnects() >= 1, "reconnected");
                assertTrue(store.resent() >= 40, "the waiting writes went out again: " + store.resent());
                assertEquals(0, store.failedOnTimeout());
                assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0));
                for (int i = 0; i < writes; i++) {
                    long sector = (long) i * (LENGTH / 512);
                    assertArrayEquals(pattern(LENGTH, (int) sector), fileBytes(image, sector * 512, LENGTH), "image at " + sector);
                }
            }
        }
    }

    @Test
    void shouldFailWithAnIoErrorPastTheTimeoutAndServeAgainWhenTheServerReturns() throws Exception {
        Path image = image(dir, "disk.img", 8 * MIB);
        try (NbdServer server = server(image)) {
            NbdStore store = NbdStore.open(options(server).withTimeout(Duration.ofSeconds(2)));
            try (BlkRig rig = BlkRig.serve(store, 1).start()) {
                rig.write(0, 0, pattern(LENGTH, 1));
                server.kill();
                Await.until("the store noticed the server went away", () -> !store.connected());
                long start = System.nanoTime();
                long status = postWrite(rig, 1024);
                awaitUsed(rig, 1, Duration.ofSeconds(10));
                long waited = (System.nanoTime() - start) / 1_000_000;
                assertEquals(IOERR, status(rig, status), "the write failed once the server was away too long");
                assertTrue(waited >= 1000 && waited < 6000, "failed after " + waited + " ms, the timeout being 2 s");
                assertEquals(1, store.failedOnTimeout());
                // Still away: new requests fail at once rather than wait.
                assertEquals(new Completion(1, IOERR), rig.transfer(0, IN, 0, 4096));

                server.start();
                Await.until("the store reconnected", store::connected, Duration.ofSeconds(10));
                assertArrayEquals(pattern(LENGTH, 1), rig.read(0, 0, LENGTH), "what was written before the outage");
                rig.write(0, 2048, pattern(LENGTH, 2));
                assertArrayEquals(pattern(LENGTH, 2), fileBytes(image, 2048 * 512, LENGTH));
            }
        }
    }

    @Test
    void shouldWaitForTheReconnectUnderWayWhenClosedSoItsFinalFlushGoesOut() throws Exception {
        Path image = image(dir, "disk.img", 8 * MIB);
        try (NbdServer server = server(image)) {
            NbdStore store = NbdStore.open(options(server));
            try (BlkRig rig = BlkRig.serve(store, 1).start()) {
                rig.write(0, 0, pattern(LENGTH, 3));
                server.kill();
                Await.until("the store noticed the server went away", () -> !store.connected());
                server.start();

                store.close(); // the server is back but not yet reconnected to: close waits for that

                assertEquals(1, store.reconnects(), "reconnected before closing");
                assertArrayEquals(pattern(LENGTH, 3), fileBytes(image, 0, LENGTH));
            }
        }
    }
}
