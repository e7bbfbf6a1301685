package io.jvhost.blk;

import io.jvhost.testkit.guest.GuestVirtio;
import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.QemuTests;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A real QEMU 7.2 guest on a jvhost disk backed by an image file, with two queues, on the default
 * I/O engine (io_uring), on split virtqueues and on packed ones ({@code packed=on}: the guest
 * negotiates VIRTIO_F_RING_PACKED).
 */
@Tag("qemu")
@Timeout(value = 15, unit = TimeUnit.MINUTES)
class JvhostBlkGuestTest {

    @ParameterizedTest(name = "packed={0}")
    @ValueSource(booleans = {false, true})
    void shouldKeepEverySectorAcrossARebootAndAFileSystemRoundTripAndAnnounceAResize(boolean packed) throws Exception {
        QemuTests.requireQemu();
        Path dir = Files.createTempDirectory("jvhost-blk");
        Path image = dir.resolve("disk.img");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(BlkGuestScenario.IMAGE_BYTES);
        }
        FileStore store = new FileStore(image, false, false, 2);
        // The default engine: io_uring wherever the kernel has it (then each queue's poller reaps its ring),
        // inline where the temp dir is a tmpfs without non-blocking reads.
        String noUring = io.jvhost.core.sys.IoUring.unavailableReason();
        boolean inline = store.file().inMemoryWithoutNoWait();
        if (noUring != null && !inline) {
            System.err.println("JvhostBlkGuestTest runs on the threads engine: io_uring unavailable: " + noUring);
        }
        assertEquals(inline ? FileStore.IoEngine.INLINE : noUring == null ? FileStore.IoEngine.URING : FileStore.IoEngine.THREADS,
                store.engine());
        BlkDevice device = new BlkDevice(store, 2);
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("blk", device, BackendOptions.DEFAULT, loop)) {
            backend.start();
            try (VhostUserServer server = VhostUserServer.listen(dir.resolve("blk.sock"), backend, loop);
                 QemuGuest guest = BlkGuestScenario.boot(server.path(), getClass(), packed)) {
                assertEquals(packed, GuestVirtio.ringPacked(guest, GuestVirtio.BLOCK), "bit 34 in the guest's features");
                BlkGuestScenario.writePattern(guest);
                guest.reboot(java.time.Duration.ofMinutes(3));
                BlkGuestScenario.checkPatternInGuest(guest);
                BlkGuestScenario.checkPatternOnHost(image);
                BlkGuestScenario.fileSystemRoundTrip(guest);

                try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
                    f.setLength(BlkGuestScenario.IMAGE_BYTES * 2);
                }
                assertTrue(device.checkResize(), "the store noticed the image grew");
                String sectors = String.valueOf(BlkGuestScenario.IMAGE_BYTES * 2 / 512);
                assertEquals(sectors + "\n", BlkGuestScenario.run(guest,
                        "i=0; while [ $(cat /sys/block/vda/size) != " + sectors + " ] && [ $i -lt 100 ]; do sleep 0.1;"
                                + " i=$((i+1)); done; cat /sys/block/vda/size"), "the guest saw the new capacity");
                guest.quit(java.time.Duration.ofSeconds(60));
            }
            assertTrue(backend.queue(0).counters().chains > 0 && backend.queue(1).counters().chains > 0,
                    "both queues carried requests: " + backend.queue(0).counters() + " / " + backend.queue(1).counters());
            assertEquals(0, backend.queue(0).counters().chainsRejected() + backend.queue(1).counters().chainsRejected());
            assertEquals(packed, backend.queue(0).isPacked() && backend.queue(1).isPacked(), "the layout the queues ran");
        } finally {
            store.close();
        }
    }
}
