package io.jvhost.blk;

/**
 * Storage behind a virtio-blk device: implement this to plug in your own.
 *
 * <p>The API is asynchronous. The device hands over batches of {@link BlockRequest}s from its poller
 * threads through {@link #submit}, which must not block; the store completes each request exactly
 * once, later, from any thread, with {@link BlockRequest#complete(int)}. Requests carry the guest's
 * buffers as {@code MemorySegment}s of guest memory, so a store can do I/O straight into them.
 * That is all a store needs: completing from its own thread (an event loop, a thread pool) wakes
 * the queue's poller.
 *
 * <p><b>Completing on the poller</b> (optional): a store whose I/O completes through a file
 * descriptor (io_uring, librbd's event socket, AIO) can let the queue's poller collect completions
 * itself, with no thread of its own and no thread hop: it overrides {@link #openQueue} and returns
 * a {@link Queue} whose {@link Queue#completionFd()} the poller watches and whose
 * {@link Queue#reap} it calls on every duty cycle. The device opens one queue per virtqueue.
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

    /**
     * The way into this store for device queue {@code index}; the device calls it once per queue, on
     * the control thread, when it makes the queue's handler, and then uses the result only on that
     * queue's poller thread. The store owns what it returns and releases it in {@link #close()}.
     * The default hands requests to {@link #submit} and lets the store complete them from any
     * thread: override it only to complete on the poller.
     */
    default Queue openQueue(int index) {
        return new Queue() {
            @Override
            public void submit(BlockRequest[] requests, int count) {
                BlockStore.this.submit(requests, count);
            }
        };
    }

    /**
     * One device queue's submission and completion path (see {@link #openQueue}). Every method runs
     * on that queue's poller thread, one call at a time, and must neither block nor allocate per
     * request.
     */
    interface Queue {
        /** As {@link BlockStore#submit}, for this queue's requests. */
        void submit(BlockRequest[] requests, int count);

        /**
         * An fd that becomes readable when completions are ready for {@link #reap}, e.g. an eventfd
         * the kernel or a library signals; -1 (the default) when completions come from other
         * threads through {@link BlockRequest#complete}. The poller watches it edge-triggered while
         * the queue runs (in busy-poll mode it just calls {@link #reap} every cycle), so the store
         * need not read it. Asked each time the queue starts.
         */
        default int completionFd() {
            return -1;
        }

        /**
         * Collects up to about {@code budget} finished operations and completes their requests
         * with {@link BlockRequest#complete} (here, on the poller). Returns how many operations it
         * collected or otherwise progressed (0 when there was nothing to do): while it returns
         * more than 0 the poller does not sleep, so a store that could not hand everything to the
         * kernel yet (EAGAIN) returns 1 to be called again. Called on every duty cycle, also while
         * the queue is stopping, until the device has no request left in the store.
         */
        default int reap(int budget) {
            return 0;
        }

        /**
         * Whether this queue's completions are made by threads of this host that need CPU time to
         * make them (a library's I/O threads, as librbd's): then the adaptive poller sleeps as soon
         * as it is idle instead of spinning first (see
         * {@link io.jvhost.core.device.QueueHandler#sleepWhenIdle}). Default false.
         */
        default boolean sleepWhenIdle() {
            return false;
        }
    }

    @Override
    default void close() {}
}
