package io.jvhost.blk;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.blk.FileStore.IoEngine;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

import static io.jvhost.blk.BlkRig.FLAG_UNMAP;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.IOERR;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.WRITE_ZEROES;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * What a file store does the same on every I/O engine (io_uring, inline and threads), beyond the request
 * types every store serves (BlkSimulatorTest): a file that shrank under the store, durable writes,
 * a file system without zero-range, a store wrapping the file store, and the chosen engine.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
@ParameterizedClass
@EnumSource(value = TestDisk.Kind.class, names = {"FILE_URING", "FILE_THREADS", "FILE_INLINE"})
class FileStoreEngineTest {
    static final int DISK_BYTES = 1 << 20;
    static final int WRITEBACK = 32;

    @Parameter
    TestDisk.Kind kind;
    @TempDir
    Path dir;
    private BlkRig rig;

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    private Path image(Path in, byte[] contents) throws Exception {
        Path image = Files.createTempFile(in, "disk", ".img");
        Files.write(image, contents);
        return image;
    }

    private FileStore store(Path image) throws Exception {
        TestDisk.assumeAvailable(kind);
        FileStore store = new FileStore(image, false, false, 2, kind.engine());
        assertEquals(kind.engine(), store.engine());
        return store;
    }

    @Test
    void shouldFailAReadThatRunsPastTheEndOfAShrunkImageButServeTheRest() throws Exception {
        byte[] contents = pattern(DISK_BYTES, 3);
        Path image = image(dir, contents);
        rig = BlkRig.serve(store(image), 1).start();
        int end = DISK_BYTES - 2048;
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(end); // under the store: it still reports the old size
        }

        assertEquals(new Completion(1, IOERR), rig.transfer(0, IN, (DISK_BYTES - 4096) / SECTOR, 4096),
                "a read whose second half lies past the end of the file");
        assertEquals(new Completion(1, IOERR), rig.transfer(0, IN, (DISK_BYTES - 1024) / SECTOR, 1024),
                "a read wholly past the end");
        assertArrayEquals(Arrays.copyOfRange(contents, end - 4096, end), rig.read(0, (end - 4096) / SECTOR, 4096),
                "a read that ends where the file ends");
        assertArrayEquals(Arrays.copyOfRange(contents, 0, 8192), rig.read(0, 0, 8192), "the queue serves on");
    }

    @Test
    void shouldCompleteWritesOnlyOnceTheyAreDurableWhileTheWriteCacheIsOff() throws Exception {
        Path image = image(dir, new byte[DISK_BYTES]);
        FileStore store = store(image);
        rig = BlkRig.serve(store, 1).start();
        assertEquals(0, rig.frontend.setConfig(WRITEBACK, new byte[] {0}), "write cache off");
        long before = kind == TestDisk.Kind.FILE_URING ? store.queues().get(0).operations : 0;

        byte[] data = pattern(8192, 5);
        rig.write(0, 64, data);

        assertArrayEquals(data, Arrays.copyOfRange(Files.readAllBytes(image), 64 * SECTOR, 64 * SECTOR + 8192));
        if (kind == TestDisk.Kind.FILE_URING) {
            assertEquals(before + 2, store.queues().get(0).operations, "a WRITEV, then an FSYNC before the completion");
        }
    }

    @Test
    void shouldWriteZerosWhereTheFileSystemHasNoZeroRange() throws Exception {
        Path shm = Path.of("/dev/shm");
        assumeTrue(Files.isDirectory(shm) && Files.getFileStore(shm).type().equals("tmpfs"), "no tmpfs at /dev/shm");
        Path tmp = Files.createTempDirectory(shm, "jvhost-zero");
        try {
            byte[] expected = pattern(DISK_BYTES, 9);
            Path image = image(tmp, expected);
            FileStore store = store(image);
            rig = BlkRig.serve(store, 1).start();

            // tmpfs punches holes but has no FALLOC_FL_ZERO_RANGE: zeroing without unmap writes zeros.
            long[][] ranges = {{8, 8, 0}, {100, 3, FLAG_UNMAP}, {200, 0, 0}, {1000, 40, 0}};
            assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, ranges));
            assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, new long[] {1500, 16, 0}), "again, now known");
            for (long[] r : new long[][] {ranges[0], ranges[1], ranges[3], {1500, 16}}) {
                Arrays.fill(expected, (int) (r[0] * SECTOR), (int) ((r[0] + r[1]) * SECTOR), (byte) 0);
            }
            assertArrayEquals(expected, Files.readAllBytes(image));
            if (kind != TestDisk.Kind.FILE_THREADS) {
                assertTrue(store.zeroesOnWorkers(), "zero-range found missing: WRITE_ZEROES goes to the workers");
            }
            rig.close();
            rig = null;
        } finally {
            try (var files = Files.list(tmp)) {
                for (Path p : (Iterable<Path>) files::iterator) {
                    Files.delete(p);
                }
            }
            Files.delete(tmp);
        }
    }

    /** Hands every request to the file store's own submit: a store a user wrapped around it. */
    private record Wrapping(FileStore inner) implements BlockStore {
        @Override
        public long size() {
            return inner.size();
        }

        @Override
        public void submit(BlockRequest[] requests, int count) {
            inner.submit(requests, count);
        }

        @Override
        public void close() {
            inner.close();
        }
    }

    @Test
    void shouldServeAStoreThatWrapsItAndSubmitsWithoutAQueue() throws Exception {
        byte[] contents = pattern(DISK_BYTES, 13);
        Path image = image(dir, contents);
        rig = BlkRig.serve(new Wrapping(store(image)), 2).start();

        byte[] data = pattern(4096, 14);
        rig.write(1, 40, data);
        System.arraycopy(data, 0, contents, 40 * SECTOR, data.length);
        assertArrayEquals(Arrays.copyOfRange(contents, 0, 65536), rig.read(0, 0, 65536));
        assertEquals(new Completion(1, OK), rig.command(0, BlkRig.FLUSH, 0));
    }

    @Test
    void shouldServeAChainOfSixtyFourScatteredSectorsBothWays() throws Exception {
        byte[] contents = pattern(DISK_BYTES, 21);
        Path image = image(dir, contents);
        rig = BlkRig.serve(store(image), 1).start();

        Area a = rig.area(2 * 64 * (SECTOR + 128) + 4096);
        Buffer[] write = new Buffer[66];
        write[0] = Buffer.readable(a.header(OUT, 300), 16);
        byte[] data = pattern(64 * SECTOR, 22);
        for (int i = 0; i < 64; i++) {
            write[1 + i] = Buffer.readable(a.put(Arrays.copyOfRange(data, i * SECTOR, (i + 1) * SECTOR)), SECTOR);
        }
        write[65] = Buffer.writable(a.status(), 1);
        assertEquals(new Completion(1, OK), rig.run(write));

        Buffer[] read = new Buffer[66];
        read[0] = Buffer.readable(a.header(IN, 300), 16);
        long[] at = new long[64];
        for (int i = 0; i < 64; i++) {
            at[i] = a.room(SECTOR);
            read[1 + i] = Buffer.writable(at[i], SECTOR);
        }
        read[65] = Buffer.writable(a.status(), 1);
        assertEquals(new Completion(64 * SECTOR + 1, OK), rig.run(read));
        for (int i = 0; i < 64; i++) {
            assertArrayEquals(Arrays.copyOfRange(data, i * SECTOR, (i + 1) * SECTOR), a.read(at[i], SECTOR), "sector " + i);
        }
        System.arraycopy(data, 0, contents, 300 * SECTOR, data.length);
        assertArrayEquals(contents, Files.readAllBytes(image));
    }

    @Test
    void shouldTakeItsEngineFromTheSystemPropertyWhenMadeWithoutOne() throws Exception {
        TestDisk.assumeAvailable(kind);
        Path image = image(dir, new byte[4096]);
        String name = switch (kind) {
            case FILE_URING -> "uring";
            case FILE_INLINE -> "Inline";
            default -> "THREADS";
        };
        String old = System.getProperty(FileStore.ENGINE_PROPERTY);
        System.setProperty(FileStore.ENGINE_PROPERTY, name);
        try (FileStore store = new FileStore(image, false, false, 1)) {
            assertEquals(kind.engine(), store.engine());
        } finally {
            if (old == null) {
                System.clearProperty(FileStore.ENGINE_PROPERTY);
            } else {
                System.setProperty(FileStore.ENGINE_PROPERTY, old);
            }
        }
        assertEquals(IoEngine.AUTO, IoEngine.parse(" Auto "));
    }
}
