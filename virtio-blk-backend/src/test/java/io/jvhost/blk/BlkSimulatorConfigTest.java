package io.jvhost.blk;

import static io.jvhost.core.device.VirtioFeatures.*;

import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.blk.userstore.CountingStore;
import io.jvhost.blk.userstore.CountingStore.Capabilities;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.core.protocol.Header;
import io.jvhost.testkit.frontend.QemuSequences;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.MessageIo;
import io.jvhost.core.sys.UnixSockets;
import io.jvhost.core.device.VirtioFeatures;

import java.io.RandomAccessFile;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import static io.jvhost.blk.BlkRig.DISCARD;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.IOERR;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.UNSUPP;
import static io.jvhost.blk.BlkRig.WRITE_ZEROES;
import static io.jvhost.blk.BlkRig.bit;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * What the driver learns about the disk: the configuration space field by field (GET_CONFIG),
 * the writeback byte it may change (SET_CONFIG), the feature bits derived from the store's
 * capabilities, and a resize announced on the backend channel.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class BlkSimulatorConfigTest {
    static final int DISK_BYTES = 1 << 20;
    static final int WRITEBACK = 32;

    @TempDir
    Path dir;
    private BlkRig rig;

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    /** An image file of {@code bytes} on the default I/O engine. */
    private FileStore fileStore(long bytes, int ioWorkers) throws Exception {
        return new FileStore(image(bytes), false, false, ioWorkers);
    }

    private FileStore fileStore(long bytes, int ioWorkers, TestDisk.Kind kind) throws Exception {
        TestDisk.assumeAvailable(kind);
        return new FileStore(image(bytes), false, false, ioWorkers, kind.engine());
    }

    private Path image(long bytes) throws Exception {
        Path image = Files.createTempFile(dir, "disk", ".img");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(bytes);
        }
        return image;
    }

    private int writebackByte() throws Exception {
        return rig.frontend.getConfig(WRITEBACK, 1)[0];
    }

    // ---- configuration space --------------------------------------------------------------

    @Test
    void shouldReportEveryConfigFieldOfARamDisk() throws Exception {
        rig = BlkRig.serve(new RamStore(DISK_BYTES), 1).start();
        byte[] raw = rig.frontend.getConfig(0, 256);
        ByteBuffer c = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);

        assertEquals(DISK_BYTES / SECTOR, c.getLong(0), "capacity, in 512-byte sectors");
        assertEquals(1 << 20, c.getInt(8), "size_max: largest segment");
        assertEquals(126, c.getInt(12), "seg_max: a queue of 128 (QEMU's default) but header and status");
        assertEquals(0, c.getInt(16), "geometry (GEOMETRY is not offered)");
        assertEquals(512, c.getInt(20), "blk_size");
        assertEquals(0, c.get(24), "topology: physical_block_exp");
        assertEquals(0, c.get(25), "topology: alignment_offset");
        assertEquals(1, c.getShort(26), "topology: min_io_size");
        assertEquals(0, c.getInt(28), "topology: opt_io_size");
        assertEquals(0, c.get(32), "writeback: a RAM disk has no volatile cache");
        assertEquals(0, c.get(33), "unused0");
        assertEquals(1, c.getShort(34), "num_queues");
        assertEquals(1 << 21, c.getInt(36), "max_discard_sectors");
        assertEquals(32, c.getInt(40), "max_discard_seg");
        assertEquals(1, c.getInt(44), "discard_sector_alignment, in sectors");
        assertEquals(1 << 21, c.getInt(48), "max_write_zeroes_sectors");
        assertEquals(32, c.getInt(52), "max_write_zeroes_seg");
        assertEquals(1, c.get(56), "write_zeroes_may_unmap");
        assertArrayEquals(new byte[256 - 57], Arrays.copyOfRange(raw, 57, 256), "unused1 and everything past the struct");
    }

    @Test
    void shouldReportTheStoresBlockSizeAsBlkSizeAndDiscardAlignment() throws Exception {
        rig = BlkRig.serve(new CountingStore(4 * DISK_BYTES, Capabilities.ALL.blockSize(4096)), 2).start();
        ByteBuffer c = rig.config();

        assertEquals(4 * DISK_BYTES / SECTOR, c.getLong(0), "capacity stays in 512-byte sectors");
        assertEquals(4096, c.getInt(20), "blk_size");
        assertEquals(8, c.getInt(44), "discard_sector_alignment: one 4 KiB block");
        assertEquals(2, c.getShort(34), "num_queues");
        assertEquals(1, c.get(WRITEBACK), "writeback: the store has a cache to flush");
    }

    @Test
    void shouldServeRequestsOfSegMaxSegmentsOnAQueueOfQemusDefaultSize() throws Exception {
        RamStore store = new RamStore(DISK_BYTES);
        ExpectedDisk disk = new ExpectedDisk(store.contents(), 12);
        rig = BlkRig.serve(store, 1);
        int segMax = rig.config().getInt(12);
        rig.start(rig.offered, 128); // QEMU 7.2's vhost-user-blk queue-size default
        // A driver that honours seg_max (Linux does) puts header, segMax data buffers and status in
        // one indirect table; a chain may not be longer than the queue (virtio 1.2 §2.7.5.3.1).
        Buffer[] read = new Buffer[segMax + 2];
        BlkRig.Area a = rig.area((segMax + 2) * (SECTOR + 128) + 4096);
        read[0] = Buffer.readable(a.header(IN, 0), 16);
        for (int i = 0; i < segMax; i++) {
            read[i + 1] = Buffer.writable(a.room(SECTOR), SECTOR);
        }
        read[segMax + 1] = Buffer.writable(a.status(), 1);

        assertEquals(new Completion(segMax * SECTOR + 1, OK), rig.runIndirect(0, read), segMax + " segments");
        for (int i = 0; i < segMax; i++) {
            assertArrayEquals(disk.bytes(i, SECTOR), a.read(read[i + 1].gpa(), SECTOR), "segment " + i);
        }
    }

    @Test
    void shouldAnswerAnyPartOfTheConfigSpaceAtItsOffset() throws Exception {
        rig = BlkRig.serve(new RamStore(DISK_BYTES), 1).start();
        byte[] all = rig.frontend.getConfig(0, BlkDevice.CONFIG_SIZE);
        for (int[] part : new int[][] {{0, 8}, {8, 4}, {20, 4}, {32, 1}, {34, 2}, {36, 24}, {59, 1}}) {
            assertArrayEquals(Arrays.copyOfRange(all, part[0], part[0] + part[1]), rig.frontend.getConfig(part[0], part[1]),
                    part[1] + " bytes at " + part[0]);
        }
    }

    @ParameterizedTest
    @EnumSource(value = TestDisk.Kind.class, names = {"FILE_URING", "FILE_THREADS", "FILE_INLINE"})
    void shouldToggleWritebackThroughSetConfigWhenTheStoreCanFlush(TestDisk.Kind kind) throws Exception {
        rig = BlkRig.serve(fileStore(DISK_BYTES, 1, kind), 1).start();
        assertEquals(1, writebackByte(), "writeback after reset");

        assertEquals(0, rig.frontend.setConfig(WRITEBACK, new byte[] {0}), "SET_CONFIG writeback=0 acked");
        assertEquals(0, writebackByte());
        assertFalse(rig.device.writeback(), "the device writes through");
        rig.write(0, 8, pattern(4096, 1)); // durable writes work on a file

        assertEquals(0, rig.frontend.setConfig(WRITEBACK, new byte[] {1}), "SET_CONFIG writeback=1 acked");
        assertEquals(1, writebackByte());
        assertTrue(rig.device.writeback());
        rig.write(0, 16, pattern(4096, 2));
        assertEquals(new Completion(1, OK), rig.command(0, BlkRig.FLUSH, 0), "FLUSH on a file");
    }

    @Test
    void shouldRefuseConfigWritesAnywhereButTheWritebackByte() throws Exception {
        rig = BlkRig.serve(fileStore(DISK_BYTES, 1), 1).start();
        byte[] before = rig.frontend.getConfig(0, BlkDevice.CONFIG_SIZE);

        assertNotEquals(0, rig.frontend.setConfig(0, new byte[8]), "capacity");
        assertNotEquals(0, rig.frontend.setConfig(20, new byte[] {0, 2, 0, 0}), "blk_size");
        assertNotEquals(0, rig.frontend.setConfig(33, new byte[] {1}), "unused0");
        assertNotEquals(0, rig.frontend.setConfig(34, new byte[] {4, 0}), "num_queues");
        assertNotEquals(0, rig.frontend.setConfig(WRITEBACK, new byte[] {0, 0}), "writeback with the byte after it");
        assertNotEquals(0, rig.frontend.setConfig(31, new byte[] {0, 0}), "writeback with the byte before it");
        assertNotEquals(0, rig.frontend.setConfig(WRITEBACK, new byte[0]), "nothing at the writeback offset");

        assertArrayEquals(before, rig.frontend.getConfig(0, BlkDevice.CONFIG_SIZE), "config unchanged");
        rig.write(0, 8, pattern(SECTOR, 3)); // the session survived the refusals
    }

    @Test
    void shouldRefuseTheWritebackByteWhenTheStoreCannotFlush() throws Exception {
        rig = BlkRig.serve(new RamStore(DISK_BYTES), 1).start();

        assertNotEquals(0, rig.frontend.setConfig(WRITEBACK, new byte[] {1}));
        assertEquals(0, writebackByte());
    }

    // ---- writeback and durability ------------------------------------------------------------

    private CountingStore.Seen lastWrite(CountingStore store) {
        List<CountingStore.Seen> seen = store.seen();
        for (int i = seen.size() - 1; i >= 0; i--) {
            if (seen.get(i).type() == BlockRequest.Type.WRITE) {
                return seen.get(i);
            }
        }
        return fail("no write reached the store");
    }

    @Test
    void shouldLeaveWritesVolatileOnlyWhileTheGuestKeepsItsWriteCacheOn() throws Exception {
        CountingStore store = new CountingStore(DISK_BYTES, Capabilities.ALL);
        rig = BlkRig.serve(store, 1).start();

        rig.write(0, 0, pattern(SECTOR, 1));
        assertFalse(lastWrite(store).durable(), "writeback: the write may stay in the cache until FLUSH");

        assertEquals(0, rig.frontend.setConfig(WRITEBACK, new byte[] {0}));
        rig.write(0, 0, pattern(SECTOR, 2));
        assertTrue(lastWrite(store).durable(), "writethrough: the write must be durable when it completes");

        assertEquals(0, rig.frontend.setConfig(WRITEBACK, new byte[] {1}));
        rig.write(0, 0, pattern(SECTOR, 3));
        assertFalse(lastWrite(store).durable());
    }

    /**
     * The guest switching its cache mode (Linux: {@code /sys/block/vda/queue/write_cache}) reaches
     * us as QEMU's SET_CONFIG of the one {@code writeback} byte, at its offset in
     * {@code struct virtio_blk_config} (virtio 1.2 §5.2.4: byte 32, after capacity @0, size_max
     * @8, seg_max @12, geometry @16, blk_size @20 and topology @24): the frontend simulator's QEMU
     * sequences write it there, the config reads back with only that byte changed, and the store
     * is asked for durable writes while the cache is off.
     */
    @Test
    void shouldTurnTheWriteCacheOffAndOnWhereQemuWritesTheWceByte() throws Exception {
        CountingStore store = new CountingStore(DISK_BYTES, Capabilities.ALL);
        rig = BlkRig.serve(store, 1).start();
        ByteBuffer before = rig.config();
        assertEquals(1, before.get(32), "writeback @32: on");

        assertEquals(0, rig.frontend.setConfig(QemuSequences.BLK_WCE_OFFSET, new byte[] {0}), "write through acked");
        ByteBuffer off = rig.config();
        assertEquals(0, off.get(32), "writeback @32: off");
        assertEquals(512, off.getInt(20), "blk_size @20 untouched");
        assertEquals(before.put(32, (byte) 0), off, "only the writeback byte changed");
        rig.write(0, 0, pattern(SECTOR, 1));
        assertTrue(lastWrite(store).durable(), "the store is asked to write through");

        assertEquals(0, rig.frontend.setConfig(QemuSequences.BLK_WCE_OFFSET, new byte[] {1}), "write back acked");
        assertEquals(1, rig.config().get(32), "writeback @32: on again");
        rig.write(0, 0, pattern(SECTOR, 2));
        assertFalse(lastWrite(store).durable(), "the store may cache again");
    }

    @Test
    void shouldWriteThroughWhenTheDriverAcceptedNeitherFlushNorConfigWce() throws Exception {
        CountingStore store = new CountingStore(DISK_BYTES, Capabilities.ALL);
        rig = BlkRig.serve(store, 1);
        assertEquals(1, writebackByte(), "before negotiation: the mode a driver accepting FLUSH gets");
        rig.start(rig.offered & ~bit(BLK_FLUSH) & ~bit(BLK_CONFIG_WCE));

        rig.write(0, 0, pattern(SECTOR, 1));

        assertTrue(lastWrite(store).durable(), "a driver without FLUSH may assume writethrough and never flush");
    }

    @Test
    void shouldReportWritethroughWhenTheDriverAcceptedConfigWceWithoutFlush() throws Exception {
        CountingStore store = new CountingStore(DISK_BYTES, Capabilities.ALL);
        rig = BlkRig.serve(store, 1).start(BlkRig.RING_FEATURES | bit(BLK_CONFIG_WCE) | bit(BLK_BLK_SIZE));

        assertEquals(0, writebackByte(), "virtio 1.2 §5.2.5.2: writeback MUST start at 0 without FLUSH");
        rig.write(0, 0, pattern(SECTOR, 1));
        assertTrue(lastWrite(store).durable());
    }

    // ---- features -------------------------------------------------------------------------

    @Test
    void shouldOfferTheFeaturesEveryDiskHasAndNoneItLacks() throws Exception {
        rig = BlkRig.serve(new RamStore(DISK_BYTES), 1);
        for (int f : new int[] {BLK_SIZE_MAX, BLK_SEG_MAX, BLK_BLK_SIZE, BLK_TOPOLOGY, VirtioFeatures.VERSION_1,
            VirtioFeatures.RING_EVENT_IDX, VirtioFeatures.RING_INDIRECT_DESC, VirtioFeatures.PROTOCOL_FEATURES}) {
            assertTrue(rig.offers(f), "feature " + f + " offered");
        }
        // BARRIER 0, GEOMETRY 4, SCSI 7, LIFETIME 15, SECURE_ERASE 16, ZONED 17, packed rings 34
        for (int f : new int[] {0, 4, 7, 15, 16, 17, VirtioFeatures.RING_PACKED, BLK_RO, BLK_MQ}) {
            assertFalse(rig.offers(f), "feature " + f + " not offered");
        }
    }

    @Test
    void shouldOfferReadOnlyForAReadOnlyStoreAndFailWritesWithIoErrorWithoutTouchingIt() throws Exception {
        CountingStore store = new CountingStore(DISK_BYTES, Capabilities.ALL.readOnly(true));
        ExpectedDisk disk = new ExpectedDisk(store.contents(), 21);
        rig = BlkRig.serve(store, 1);
        assertTrue(rig.offers(BLK_RO), "RO offered");
        assertFalse(rig.offers(BLK_DISCARD), "no DISCARD on a read-only disk");
        assertFalse(rig.offers(BLK_WRITE_ZEROES), "no WRITE_ZEROES on a read-only disk");
        rig.start();

        BlkRig.Area a = rig.area(8192);
        long header = a.header(OUT, 8);
        long data = a.put(pattern(4096, 22));
        long status = a.status();
        a.snapshot();
        a.expectStatus(status, IOERR);
        assertEquals(new Completion(1, IOERR), rig.run(Buffer.readable(header, 16),
                Buffer.readable(data, 4096),
                Buffer.writable(status, 1)));
        a.assertAsExpected();
        assertEquals(new Completion(1, UNSUPP), rig.ranges(DISCARD, new long[] {0, 8, 0}));
        assertEquals(new Completion(1, UNSUPP), rig.ranges(WRITE_ZEROES, new long[] {0, 8, 0}));

        assertEquals(0, store.total(), "requests that reached the store");
        disk.assertMatches();
        assertArrayEquals(disk.bytes(8, 4096), rig.read(0, 8, 4096), "reads still work");
        assertEquals(1, store.count(BlockRequest.Type.READ));
    }

    @Test
    void shouldOfferFlushAndConfigWceOnlyWhenTheStoreCanFlush() throws Exception {
        try (BlkRig ram = BlkRig.serve(new RamStore(DISK_BYTES), 1)) {
            assertFalse(ram.offers(BLK_FLUSH), "RAM: FLUSH");
            assertFalse(ram.offers(BLK_CONFIG_WCE), "RAM: CONFIG_WCE");
        }
        try (BlkRig file = BlkRig.serve(fileStore(DISK_BYTES, 1), 1)) {
            assertTrue(file.offers(BLK_FLUSH), "file: FLUSH");
            assertTrue(file.offers(BLK_CONFIG_WCE), "file: CONFIG_WCE");
        }
        try (BlkRig user = BlkRig.serve(new CountingStore(DISK_BYTES, Capabilities.NONE.flush(true)), 1)) {
            assertTrue(user.offers(BLK_FLUSH), "user store: FLUSH");
            assertTrue(user.offers(BLK_CONFIG_WCE), "user store: CONFIG_WCE");
        }
        try (BlkRig user = BlkRig.serve(new CountingStore(DISK_BYTES, Capabilities.NONE), 1)) {
            assertFalse(user.offers(BLK_FLUSH), "user store without a cache: FLUSH");
            assertFalse(user.offers(BLK_CONFIG_WCE), "user store without a cache: CONFIG_WCE");
        }
    }

    @Test
    void shouldOfferDiscardAndWriteZeroesOnlyWhenTheStoreCanDoThem() throws Exception {
        Capabilities[] caps = {Capabilities.NONE, Capabilities.NONE.discard(true), Capabilities.NONE.writeZeroes(true),
            Capabilities.NONE.discard(true).writeZeroes(true)};
        for (Capabilities c : caps) {
            try (BlkRig r = BlkRig.serve(new CountingStore(DISK_BYTES, c), 1)) {
                assertEquals(c.canDiscard(), r.offers(BLK_DISCARD), "DISCARD for " + c);
                assertEquals(c.canWriteZeroes(), r.offers(BLK_WRITE_ZEROES), "WRITE_ZEROES for " + c);
            }
        }
        try (BlkRig r = BlkRig.serve(new RamStore(DISK_BYTES), 1)) {
            assertTrue(r.offers(BLK_DISCARD) && r.offers(BLK_WRITE_ZEROES), "a RAM disk can do both");
        }
    }

    @Test
    void shouldOfferMultiQueueOnlyWithMoreThanOneQueue() throws Exception {
        try (BlkRig one = BlkRig.serve(new RamStore(DISK_BYTES), 1)) {
            assertFalse(one.offers(BLK_MQ));
            assertEquals(1, one.frontend.getQueueNum());
        }
        try (BlkRig four = BlkRig.serve(new RamStore(DISK_BYTES), 4)) {
            assertTrue(four.offers(BLK_MQ));
            assertEquals(4, four.frontend.getQueueNum());
            assertEquals(4, four.config().getShort(34), "num_queues");
        }
    }

    // ---- resize ---------------------------------------------------------------------------

    /** Receives exactly {@code length} bytes from {@code socket}, or null if none came within {@code timeout}. */
    private static byte[] receive(Fd socket, int length, Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        try (MessageIo io = new MessageIo(64)) {
            int have = 0;
            while (have < length) {
                MessageIo.Received r = io.receive(socket.get(), have, length - have, false);
                Fd.closeAll(r.fds());
                if (r.bytes() > 0) {
                    have += (int) r.bytes();
                } else if (r.bytes() == 0) {
                    return fail("the backend closed its channel");
                } else if (r.bytes() != -LibC.EAGAIN) {
                    return fail("recvmsg: errno " + -r.bytes());
                } else if (System.nanoTime() > deadline) {
                    if (have == 0) {
                        return null;
                    }
                    return fail("only " + have + " of " + length + " bytes");
                } else {
                    Thread.sleep(1);
                }
            }
            return io.rxBuffer().asSlice(0, length).toArray(ValueLayout.JAVA_BYTE);
        }
    }

    private static void grow(Path image, long bytes) throws Exception {
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(bytes);
        }
    }

    @ParameterizedTest
    @EnumSource(value = TestDisk.Kind.class, names = {"FILE_URING", "FILE_THREADS", "FILE_INLINE"})
    void shouldAnnounceAGrownImageOnTheBackendChannelAndReportTheNewCapacity(TestDisk.Kind kind) throws Exception {
        TestDisk.assumeAvailable(kind);
        Path image = dir.resolve("grow.img");
        grow(image, DISK_BYTES);
        rig = BlkRig.serve(new FileStore(image, false, false, 1, kind.engine()), 1).start();
        Fd[] channel = UnixSockets.pair();
        try {
            assertEquals(0, rig.frontend.request(MessageType.SET_BACKEND_REQ_FD, new byte[0], channel[0]), "backend channel acked");
            channel[0].close();
            assertFalse(rig.device.checkResize(), "nothing changed yet");
            assertEquals(new Completion(1, IOERR), rig.transfer(0, IN, DISK_BYTES / SECTOR, SECTOR), "no sector past the end yet");

            grow(image, 3L * DISK_BYTES);
            assertTrue(rig.device.checkResize(), "the store saw the new size");

            byte[] message = receive(channel[1], Header.SIZE, Duration.ofSeconds(10));
            assertTrue(message != null, "no CONFIG_CHANGE_MSG within 10 s");
            ByteBuffer m = ByteBuffer.wrap(message).order(ByteOrder.LITTLE_ENDIAN);
            assertEquals(2, m.getInt(0), "request: VHOST_USER_BACKEND_CONFIG_CHANGE_MSG");
            assertEquals(Header.VERSION, m.getInt(4), "flags: version 1, no reply wanted");
            assertEquals(0, m.getInt(8), "size");
            assertEquals(3L * DISK_BYTES / SECTOR, rig.capacity(), "capacity in GET_CONFIG");

            byte[] data = pattern(4096, 31);
            long sector = 3L * DISK_BYTES / SECTOR - 8;
            rig.write(0, sector, data);
            assertArrayEquals(data, rig.read(0, sector, 4096), "the new sectors are served");
            assertArrayEquals(data, Arrays.copyOfRange(Files.readAllBytes(image), (int) (sector * SECTOR), (int) (sector * SECTOR) + 4096));

            assertFalse(rig.device.checkResize(), "the same size again");
            assertNull(receive(channel[1], Header.SIZE, Duration.ofMillis(200)), "no second announcement");
        } finally {
            Fd.closeAll(channel);
        }
    }

    @ParameterizedTest
    @EnumSource(value = TestDisk.Kind.class, names = {"FILE_URING", "FILE_THREADS", "FILE_INLINE"})
    void shouldReportANewCapacityEvenWithoutABackendChannel(TestDisk.Kind kind) throws Exception {
        TestDisk.assumeAvailable(kind);
        Path image = dir.resolve("quiet.img");
        grow(image, DISK_BYTES);
        rig = BlkRig.serve(new FileStore(image, false, false, 1, kind.engine()), 1).start();

        grow(image, 2L * DISK_BYTES);

        assertTrue(rig.device.checkResize());
        assertEquals(2L * DISK_BYTES / SECTOR, rig.capacity());
        rig.write(0, 2L * DISK_BYTES / SECTOR - 1, pattern(SECTOR, 1)); // the session carries on
    }
}
