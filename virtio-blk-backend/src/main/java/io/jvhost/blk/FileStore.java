package io.jvhost.blk;

import io.jvhost.core.sys.BlockFile;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A raw image file or block device. I/O workers do positional reads and writes straight between
 * the file and guest memory, fdatasync for FLUSH (and for writes while the guest's write cache is
 * off), fallocate punch-hole for DISCARD and zero-range (or punch-hole with unmap) for WRITE_ZEROES.
 */
public final class FileStore implements BlockStore {
    private static final Logger LOG = LoggerFactory.getLogger(FileStore.class);
    private static final int EIO = 5, EFAULT = 14;

    private final BlockFile file;
    private final IoWorkers<BlockRequest> workers;
    private final boolean holes;
    private volatile long size;
    private boolean closed;

    /** Opens {@code path}; {@code direct} uses O_DIRECT (the guest's buffers must then be aligned). */
    public FileStore(Path path, boolean readOnly, boolean direct, int ioWorkers) throws NativeException {
        this.file = BlockFile.open(path, readOnly, direct);
        this.size = file.size() & ~(long) (BlkDevice.SECTOR - 1);
        this.holes = !file.isBlockDevice();
        this.workers = new IoWorkers<>("blk-" + path.getFileName(), ioWorkers, 4096, this::execute);
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public boolean refreshSize() {
        try {
            long now = file.size() & ~(long) (BlkDevice.SECTOR - 1);
            boolean changed = now != size;
            size = now;
            return changed;
        } catch (NativeException e) {
            return false;
        }
    }

    @Override
    public boolean readOnly() {
        return file.readOnly();
    }

    @Override
    public boolean canDiscard() {
        return holes;
    }

    @Override
    public boolean canWriteZeroes() {
        return true;
    }

    @Override
    public String id() {
        String name = file.path().getFileName().toString();
        return name.length() > 20 ? name.substring(0, 20) : name;
    }

    @Override
    public void submit(BlockRequest[] requests, int count) {
        for (int i = 0; i < count; i++) {
            workers.submit(requests[i]);
        }
        workers.signal();
    }

    /** On an I/O worker. */
    private void execute(BlockRequest r) {
        int err = switch (r.type()) {
            case READ -> transfer(r, false);
            case WRITE -> {
                int e = transfer(r, true);
                yield e == 0 && r.durable() ? file.flush() : e;
            }
            case FLUSH -> file.flush();
            case DISCARD -> ranges(r, false);
            case WRITE_ZEROES -> ranges(r, true);
        };
        if (err != 0) {
            LOG.warn("{} on {} failed: errno {}", r, file.path(), -err);
        }
        r.complete(err == 0 ? BlockRequest.STATUS_OK : BlockRequest.STATUS_IOERR);
    }

    private int transfer(BlockRequest r, boolean write) {
        long at = r.offset();
        for (int s = 0; s < r.segmentCount(); s++) {
            // Guest memory stays mapped while the request is in flight: the device's queue stop
            // waits for it before a memory table change unmaps anything.
            MemorySegment memory = r.segmentMemory(s);
            long offset = r.segmentOffset(s), n = r.segmentLength(s);
            int e = write ? file.write(memory, offset, n, at) : file.read(memory, offset, n, at);
            if (e != 0) {
                return e == -EFAULT ? -EIO : e;
            }
            at += n;
        }
        return 0;
    }

    private int ranges(BlockRequest r, boolean zero) {
        for (int g = 0; g < r.rangeCount(); g++) {
            long off = r.rangeOffset(g), len = r.rangeLength(g);
            if (len == 0) {
                continue; // a range of no sectors is valid; fallocate would fail it with EINVAL
            }
            int e;
            if (!zero) {
                e = file.punchHole(off, len);
                if (e == -95) {
                    e = 0; // discard is advisory: a file system without holes may ignore it
                }
            } else {
                e = holes && r.unmap() ? file.punchHole(off, len) : file.zeroRange(off, len);
                if (e == -95) {
                    e = writeZeros(off, len);
                }
            }
            if (e != 0) {
                return e;
            }
        }
        return 0;
    }

    /** Native (syscalls cannot take heap memory), zero-filled, never written. */
    private final MemorySegment zeros = java.lang.foreign.Arena.ofAuto().allocate(1 << 16, 4096);

    private int writeZeros(long off, long len) {
        MemorySegment z = zeros;
        for (long done = 0; done < len; ) {
            long n = Math.min(z.byteSize(), len - done);
            int e = file.write(z, 0, n, off + done);
            if (e != 0) {
                return e;
            }
            done += n;
        }
        return 0;
    }

    /**
     * Stops the I/O workers, then makes every write durable (fdatasync) before closing the file:
     * a guest may have written without flushing, and the backend is going away. Throws if that
     * sync fails. Call once nothing submits any more; closing again does nothing.
     */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        workers.close();
        int err = file.readOnly() ? 0 : file.flush();
        file.close();
        if (err != 0) {
            throw new IllegalStateException("fdatasync of " + file.path() + " failed: errno " + -err);
        }
        if (!file.readOnly()) {
            LOG.info("{} flushed and closed", file.path());
        }
    }
}
