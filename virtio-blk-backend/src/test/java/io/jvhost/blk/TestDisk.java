package io.jvhost.blk;

import io.jvhost.blk.FileStore.IoEngine;
import io.jvhost.core.sys.IoUring;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * A store for a test, of one of the kinds the tests run on, and its contents as memory the test
 * may fill and compare: the RAM disk's own, or the image file mapped shared (the same page cache
 * the file store reads and writes). Closing it unmaps the file; the rig closes the store.
 */
record TestDisk(BlockStore store, MemorySegment contents, Path image, Arena arena) implements AutoCloseable {

    /** What a test runs on: a RAM disk, or an image file on each I/O engine (inline forced, whatever the file system). */
    enum Kind {
        RAM, FILE_URING, FILE_THREADS, FILE_INLINE;

        IoEngine engine() {
            return switch (this) {
                case FILE_THREADS -> IoEngine.THREADS;
                case FILE_INLINE -> IoEngine.INLINE;
                default -> IoEngine.URING;
            };
        }
    }

    /** Every kind of file store; io_uring only where the kernel has it (said loudly otherwise). */
    static void assumeAvailable(Kind kind) {
        if (kind == Kind.FILE_URING) {
            String why = IoUring.unavailableReason();
            if (why != null) {
                System.err.println("SKIPPED on io_uring: " + why);
            }
            assumeTrue(why == null, "io_uring unavailable: " + why);
        }
    }

    /** A store of {@code bytes} of kind {@code kind}, its image (if any) a new file in {@code dir}. */
    static TestDisk open(Kind kind, Path dir, long bytes) throws IOException {
        assumeAvailable(kind);
        if (kind == Kind.RAM) {
            RamStore ram = new RamStore(bytes);
            return new TestDisk(ram, ram.contents(), null, null);
        }
        Path image = java.nio.file.Files.createTempFile(dir, "disk", ".img");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(bytes);
        }
        Arena arena = Arena.ofShared();
        MemorySegment contents;
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            contents = ch.map(FileChannel.MapMode.READ_WRITE, 0, bytes, arena);
        }
        return new TestDisk(new FileStore(image, false, false, 2, kind.engine()), contents, image, arena);
    }

    @Override
    public void close() {
        if (arena != null) {
            arena.close();
        }
    }
}
