package io.jvhost.blk;

/**
 * Storage behind a virtio-blk device: implement this to plug in your own.
 *
 * <p>The API is asynchronous. The device hands over batches of {@link BlockRequest}s from its poller
 * threads through {@link #submit}, which must not block; the store completes each request exactly
 * once, later, from any thread, with {@link BlockRequest#complete(int)}. Requests carry the guest's
 * buffers as {@code MemorySegment}s of guest memory, so a store can do I/O straight into them.
 *
 * <p>Capabilities declared here become virtio feature bits: a store that cannot discard is never
 * sent DISCARD, a read-only store gets VIRTIO_BLK_F_RO, and so on.
 */
public interface BlockStore extends AutoCloseable {
    /** Size in bytes; a multiple of 512. Read again when the device looks for a resize. */
    long size();

    /**
     * Looks at the backing storage again; returns true when {@link #size()} changed (the device
     * then announces the new capacity to the guest). Control path; may block briefly.
     */
    default boolean refreshSize() {
        return false;
    }

    /** Logical block size the guest should use (512, 4096, ...). */
    default int blockSize() {
        return 512;
    }

    default boolean readOnly() {
        return false;
    }

    /** Whether FLUSH does something (a volatile write cache exists). */
    default boolean canFlush() {
        return true;
    }

    default boolean canDiscard() {
        return false;
    }

    default boolean canWriteZeroes() {
        return false;
    }

    /** Up to 20 bytes the guest reads as the disk's serial (GET_ID). */
    default String id() {
        return "jvhost";
    }

    /**
     * Starts {@code count} requests from {@code requests[0..count)}. Called on a poller thread:
     * must not block, and must not throw: report a failure by completing the request with
     * {@link BlockRequest#STATUS_IOERR}. The array is reused after the call returns; the requests themselves stay
     * valid until completed.
     */
    void submit(BlockRequest[] requests, int count);

    @Override
    default void close() {}
}
