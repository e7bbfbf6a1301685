package io.jvhost.blk;

import io.jvhost.blk.FileStore.IoEngine;
import io.jvhost.core.sys.IoUring;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Which engine {@link IoEngine#AUTO} picks for a file: inline where the file is in memory and
 * cannot be read without blocking (tmpfs on this kernel: io_uring would punt each request to a
 * kernel worker), io_uring (or threads) on a real file system; a forced engine wins everywhere.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class FileStoreEngineChoiceTest {
    static final int DISK_BYTES = 1 << 20;

    @TempDir
    Path dir;
    private Path shmDir;
    private BlkRig rig;

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
        if (shmDir != null) {
            try (var files = Files.list(shmDir)) {
                for (Path p : (Iterable<Path>) files::iterator) {
                    Files.delete(p);
                }
            }
            Files.delete(shmDir);
        }
    }

    /** An image in /dev/shm, where tmpfs has no RWF_NOWAIT (kernels before it learnt to: skipped). */
    private Path tmpfsImage(byte[] contents) throws Exception {
        Path shm = Path.of("/dev/shm");
        assumeTrue(Files.isDirectory(shm) && Files.getFileStore(shm).type().equals("tmpfs"), "no tmpfs at /dev/shm");
        shmDir = Files.createTempDirectory(shm, "jvhost-engine");
        Path image = shmDir.resolve("disk.img");
        Files.write(image, contents);
        return image;
    }

    @Test
    void shouldCompleteInlineOnTheQueuesPollerForAnImageOnTmpfs() throws Exception {
        byte[] contents = pattern(DISK_BYTES, 7);
        FileStore store = new FileStore(tmpfsImage(contents), false, false, 1, IoEngine.AUTO);
        boolean noNoWait = store.file().inMemoryWithoutNoWait();
        if (!noNoWait) {
            store.close();
        }
        assumeTrue(noNoWait, "this kernel's tmpfs reads without blocking: io_uring completes its page-cache hits inline");
        assertEquals(IoEngine.INLINE, store.engine());
        rig = BlkRig.serve(store, 1).start();

        byte[] data = pattern(12288, 8);
        rig.write(0, 16, data);
        assertArrayEquals(data, rig.read(0, 16, data.length));
        assertArrayEquals(Arrays.copyOfRange(contents, 0, 8192), rig.read(0, 0, 8192));
        assertEquals(0, store.queues().size(), "no ring opened");
    }

    @Test
    void shouldKeepIoUringForAnImageOnARealFileSystem() throws Exception {
        Path image = dir.resolve("disk.img");
        Files.write(image, new byte[4096]);
        assumeTrue(!Files.getFileStore(dir).type().equals("tmpfs"), "the temp dir is on tmpfs");
        try (FileStore store = new FileStore(image, false, false, 1, IoEngine.AUTO)) {
            assertNotEquals(IoEngine.INLINE, store.engine());
            assertEquals(IoUring.unavailableReason() == null ? IoEngine.URING : IoEngine.THREADS, store.engine());
        }
    }

    @Test
    void shouldTakeTheForcedEngineOnTmpfsToo() throws Exception {
        Path image = tmpfsImage(new byte[4096]);
        try (FileStore store = new FileStore(image, false, false, 1, IoEngine.THREADS)) {
            assertEquals(IoEngine.THREADS, store.engine());
        }
        if (IoUring.unavailableReason() == null) {
            try (FileStore store = new FileStore(image, false, false, 1, IoEngine.URING)) {
                assertEquals(IoEngine.URING, store.engine());
            }
        }
    }
}
