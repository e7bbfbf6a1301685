package io.jvhost.blk;

import io.jvhost.core.sys.NativeException;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What the two stores on storage that can be resized underneath them ({@link FileStore}: a file or
 * block device; {@link RbdStore}: an RBD image) have in common: their size, whole sectors of what
 * the device last reported, read again on a resize notice ({@link #refreshSize()}); and
 * WRITE_ZEROES, which both always offer. {@link #size()} is read by any thread.
 */
abstract sealed class ResizableStore implements BlockStore permits FileStore, RbdStore {
    private static final Logger LOG = LoggerFactory.getLogger(ResizableStore.class);
    private volatile long size;

    /** The device's size in bytes now. */
    abstract long deviceBytes() throws NativeException;

    /** Reads the size the first time: in the subclass's constructor, once the device is open. */
    final void readSize() throws NativeException {
        size = BlkDevice.wholeSectors(deviceBytes());
    }

    @Override
    public final long size() {
        return size;
    }

    @Override
    public final boolean refreshSize() {
        try {
            long now = BlkDevice.wholeSectors(deviceBytes());
            boolean changed = now != size;
            size = now;
            return changed;
        } catch (NativeException e) {
            LOG.warn("{}: cannot read the size: {}", this, e.getMessage());
            return false;
        }
    }

    @Override
    public final boolean canWriteZeroes() {
        return true;
    }
}
