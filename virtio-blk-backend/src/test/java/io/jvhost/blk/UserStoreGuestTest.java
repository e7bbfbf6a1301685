package io.jvhost.blk;

import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.QemuTests;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A store written here, only against the public {@link BlockStore} API, completes requests on its
 * own thread; a real guest writes and reads a pattern through it.
 */
@Tag("qemu")
@Timeout(value = 10, unit = TimeUnit.MINUTES)
class UserStoreGuestTest {

    /** Keeps the data in RAM, counts requests by type, and completes them from its own thread. */
    static final class CountingStore implements BlockStore {
        final RamStore ram = new RamStore(BlkGuestScenario.IMAGE_BYTES);
        final AtomicLong reads = new AtomicLong(), writes = new AtomicLong(), others = new AtomicLong();
        final ConcurrentLinkedQueue<BlockRequest> pending = new ConcurrentLinkedQueue<>();
        final Thread completer = Thread.ofPlatform().daemon(true).start(this::complete);

        @Override
        public long size() {
            return ram.size();
        }

        @Override
        public void submit(BlockRequest[] requests, int count) {
            for (int i = 0; i < count; i++) {
                switch (requests[i].type()) {
                    case READ -> reads.incrementAndGet();
                    case WRITE -> writes.incrementAndGet();
                    default -> others.incrementAndGet();
                }
                pending.add(requests[i]);
            }
        }

        private void complete() {
            BlockRequest[] one = new BlockRequest[1];
            while (true) {
                BlockRequest r = pending.poll();
                if (r == null) {
                    java.util.concurrent.locks.LockSupport.parkNanos(20_000);
                    continue;
                }
                one[0] = r;
                ram.submit(one, 1); // RamStore completes inline, here on our thread
            }
        }
    }

    @Test
    void shouldLetAGuestReadAndWriteThroughAStorePluggedInByTheUser() throws Exception {
        QemuTests.requireQemu();
        Path dir = Files.createTempDirectory("jvhost-userstore");
        CountingStore store = new CountingStore();
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("blk", new BlkDevice(store, 2), BackendOptions.DEFAULT, loop);
             VhostUserServer server = startServer(dir, backend, loop);
             QemuGuest guest = BlkGuestScenario.boot(server.path(), getClass())) {
            BlkGuestScenario.writePattern(guest);
            BlkGuestScenario.checkPatternInGuest(guest);
            guest.quit(Duration.ofSeconds(60));
        }
        assertTrue(store.writes.get() >= BlkGuestScenario.OFFSETS.length, "writes: " + store.writes);
        assertTrue(store.reads.get() >= BlkGuestScenario.OFFSETS.length, "reads: " + store.reads);
        for (long off : BlkGuestScenario.OFFSETS) {
            byte[] expected = BlkGuestScenario.expectedChunk(off);
            byte[] actual = store.ram.contents().asSlice(off * 512, expected.length).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
            org.junit.jupiter.api.Assertions.assertArrayEquals(expected, actual, "store bytes at sector " + off);
        }
    }

    private static VhostUserServer startServer(Path dir, Backend backend, ControlLoop loop) throws Exception {
        backend.start();
        return VhostUserServer.listen(dir.resolve("blk.sock"), backend, loop);
    }
}
