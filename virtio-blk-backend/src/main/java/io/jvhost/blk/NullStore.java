package io.jvhost.blk;

/**
 * A disk of a given size with nothing behind it, for measuring the framework's own cost per
 * request: reads complete without touching the guest's buffer (it keeps whatever it held), writes
 * are discarded, FLUSH, DISCARD and WRITE_ZEROES succeed and do nothing. This is what
 * qemu-storage-daemon's {@code null-co} block driver (without {@code read-zeroes=on}) and SPDK's
 * null bdev do, so a comparison with them measures the vhost-user and virtio paths alone. Every
 * request completes inline on the poller thread; nothing is allocated.
 */
public final class NullStore extends FixedSizeStore {
    public NullStore(long sizeBytes) {
        this(sizeBytes, false);
    }

    public NullStore(long sizeBytes, boolean readOnly) {
        super("null disk", sizeBytes, readOnly);
    }

    /** FLUSH is offered, as null-co does, so that a guest's flushes are part of what is measured. */
    @Override
    public boolean canFlush() {
        return true;
    }

    @Override
    public String id() {
        return "jvhost-null";
    }

    /** Poller thread: completes every request with OK, touching no data. */
    @Override
    public void submit(BlockRequest[] requests, int count) {
        for (int i = 0; i < count; i++) {
            requests[i].complete(BlockRequest.STATUS_OK);
        }
    }
}
