package io.jvhost.core.sys;


import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * A raw image file or block device opened for positional I/O straight into guest memory, for
 * storage backends. Calls block: use them from I/O worker threads, never from a poller. The I/O
 * methods return {@code -errno} on failure instead of throwing. Thread-safe.
 */
public final class BlockFile implements AutoCloseable {
    private static final int EIO = 5;
    private final Fd fd;
    private final Path path;
    private final boolean readOnly;
    private final boolean blockDevice;

    private BlockFile(Fd fd, Path path, boolean readOnly, boolean blockDevice) {
        this.fd = fd;
        this.path = path;
        this.readOnly = readOnly;
        this.blockDevice = blockDevice;
    }

    /** Opens {@code path}; {@code direct} bypasses the page cache (O_DIRECT). */
    public static BlockFile open(Path path, boolean readOnly, boolean direct) throws NativeException {
        int flags = (readOnly ? FileCalls.O_RDONLY : FileCalls.O_RDWR) | FileCalls.O_CLOEXEC | (direct ? FileCalls.O_DIRECT : 0);
        Fd fd = Fd.adopt((int) LibC.check(FileCalls.open(path.toString(), flags), "open " + path));
        int blk = FileCalls.isBlockDevice(fd.get());
        if (blk < 0) {
            fd.close();
            LibC.check(blk, "fstat " + path);
        }
        return new BlockFile(fd, path, readOnly, blk == 1);
    }

    public Path path() {
        return path;
    }

    public boolean readOnly() {
        return readOnly;
    }

    /**
     * The open file's descriptor, for I/O the caller issues itself (an {@link IoUring} operation).
     * Valid until {@link #close()}; the caller must not close it.
     */
    public int fd() {
        return fd.get();
    }

    public boolean isBlockDevice() {
        return blockDevice;
    }

    /**
     * Whether the file lives in memory (tmpfs or ramfs) where reads and writes cannot be done without
     * blocking: reads with RWF_NOWAIT fail EOPNOTSUPP (so io_uring hands each one to a kernel worker
     * thread) though they are only memory copies. False on block devices, other file systems, or
     * a tmpfs that can (newer kernels). Control path.
     */
    public boolean inMemoryWithoutNoWait() {
        if (blockDevice) {
            return false;
        }
        long type = FileCalls.fileSystemType(fd.get());
        if (type != FileCalls.TMPFS_MAGIC && type != FileCalls.RAMFS_MAGIC) {
            return false;
        }
        return FileCalls.readNoWait(fd.get(), 512, 0) == -LibC.EOPNOTSUPP;
    }

    /** The current size in bytes (re-read each call, so a resize shows). */
    public long size() throws NativeException {
        return LibC.check(blockDevice ? FileCalls.blockDeviceSize(fd.get()) : FileCalls.fileSize(fd.get()), "size of " + path);
    }

    /**
     * Reads exactly {@code length} bytes at file {@code offset} into {@code [bufOffset, bufOffset + length)}
     * of the native segment {@code buf}; 0 or {@code -errno} (-EIO at end of file). Allocation-free.
     * The caller keeps {@code buf} mapped until this returns: the call holds only its address.
     */
    public int read(MemorySegment buf, long bufOffset, long length, long offset) {
        return transfer(buf, bufOffset, length, offset, false);
    }

    /** Writes {@code [bufOffset, bufOffset + length)} of {@code buf} at file {@code offset}; as {@link #read}. */
    public int write(MemorySegment buf, long bufOffset, long length, long offset) {
        return transfer(buf, bufOffset, length, offset, true);
    }

    private int transfer(MemorySegment buf, long bufOffset, long n, long offset, boolean write) {
        long done = 0;
        while (done < n) {
            long r = write ? FileCalls.pwrite(fd.get(), buf, bufOffset + done, n - done, offset + done)
                    : FileCalls.pread(fd.get(), buf, bufOffset + done, n - done, offset + done);
            if (r == -LibC.EINTR) {
                continue;
            }
            if (r <= 0) {
                return r == 0 ? -EIO : (int) r; // a short file ends the transfer: an I/O error
            }
            done += r;
        }
        return 0;
    }

    /** fdatasync: data written so far is durable. 0 or {@code -errno}. */
    public int flush() {
        return FileCalls.fdatasync(fd.get());
    }

    /** Deallocates a range (reads return zeros after). 0 or {@code -errno} (-EOPNOTSUPP if unsupported). */
    public int punchHole(long offset, long length) {
        return FileCalls.fallocate(fd.get(), FileCalls.FALLOC_FL_PUNCH_HOLE | FileCalls.FALLOC_FL_KEEP_SIZE, offset, length);
    }

    /** Zeroes a range, keeping it allocated. 0 or {@code -errno} (-EOPNOTSUPP if unsupported). */
    public int zeroRange(long offset, long length) {
        return FileCalls.fallocate(fd.get(), FileCalls.FALLOC_FL_ZERO_RANGE | FileCalls.FALLOC_FL_KEEP_SIZE, offset, length);
    }

    @Override
    public void close() {
        fd.close();
    }
}
