package io.jvhost.blk;

import io.jvhost.blk.userstore.CountingStore;
import io.jvhost.blk.userstore.CountingStore.Capabilities;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.guest.QemuGuest;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.blk.BlkGuestScenario.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A Linux guest switches its disk's cache mode through virtio-blk's {@code /sys/block/vda/cache_type}
 * (the block layer's {@code queue/write_cache} only changes whether the kernel sends flushes, and
 * never reaches the device): the driver writes the config's {@code writeback} byte, QEMU forwards
 * it (SET_CONFIG at offset 32), and the store is asked for durable writes exactly while the cache
 * is off.
 */
@Tag("qemu")
@Timeout(value = 10, unit = TimeUnit.MINUTES)
class WriteCacheGuestTest {
    static final String CACHE = "/sys/block/vda/cache_type", QUEUE_CACHE = "/sys/block/vda/queue/write_cache";

    /** Whether the store was asked to make the write of one 4 KiB block at {@code block} durable. */
    private static boolean durable(CountingStore store, long block) {
        for (CountingStore.Seen s : store.seen()) {
            if (s.type() == BlockRequest.Type.WRITE && s.offset() == block * 4096) {
                return s.durable();
            }
        }
        return fail("no write of block " + block + " reached the store");
    }

    @Test
    void shouldWriteThroughWhileTheGuestTurnsItsWriteCacheOff() throws Exception {
        QemuTests.requireQemu();
        Path dir = Files.createTempDirectory("jvhost-wce");
        CountingStore store = new CountingStore(BlkGuestScenario.IMAGE_BYTES, Capabilities.ALL);
        BlkDevice device = new BlkDevice(store, 2);
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("blk", device, BackendOptions.DEFAULT, loop);
             VhostUserServer server = start(dir, backend, loop);
             QemuGuest guest = BlkGuestScenario.boot(server.path(), getClass())) {
            assertEquals("write back\n", run(guest, "cat " + CACHE));
            run(guest, "dd if=/dev/zero of=/dev/vda bs=4096 seek=10 count=1 oflag=direct 2>/dev/null");
            assertFalse(durable(store, 10), "write back: the write may stay in the cache");

            run(guest, "echo 'write through' > " + CACHE);
            assertEquals("write through\n", run(guest, "cat " + CACHE));
            assertEquals("write through\n", run(guest, "cat " + QUEUE_CACHE), "the block layer follows the device");
            assertFalse(device.writeback(), "the device heard the guest");
            run(guest, "dd if=/dev/zero of=/dev/vda bs=4096 seek=11 count=1 oflag=direct 2>/dev/null");
            assertTrue(durable(store, 11), "write through: the store must make the write durable");

            run(guest, "echo 'write back' > " + CACHE);
            run(guest, "dd if=/dev/zero of=/dev/vda bs=4096 seek=12 count=1 oflag=direct 2>/dev/null");
            assertFalse(durable(store, 12), "write back again");
            guest.quit(Duration.ofSeconds(60));
        } finally {
            store.close();
            Files.deleteIfExists(dir.resolve("blk.sock"));
            Files.deleteIfExists(dir);
        }
    }

    private static VhostUserServer start(Path dir, Backend backend, ControlLoop loop) throws Exception {
        backend.start();
        return VhostUserServer.listen(dir.resolve("blk.sock"), backend, loop);
    }
}
