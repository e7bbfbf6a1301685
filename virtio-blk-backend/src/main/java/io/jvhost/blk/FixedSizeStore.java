package io.jvhost.blk;

/**
 * What the two in-process stores ({@link RamStore}, {@link NullStore}) have in common: a size fixed
 * at construction (a positive multiple of 512), an optional read-only flag, and DISCARD and
 * WRITE_ZEROES offered, since neither has a backing device that could lack them. Whether FLUSH
 * is offered, and what a request does, is each store's own.
 */
abstract sealed class FixedSizeStore implements BlockStore permits RamStore, NullStore {
    private final long size;
    private final boolean readOnly;

    /** @param what the store's name in the error message for a size that cannot be ("RAM disk") */
    FixedSizeStore(String what, long sizeBytes, boolean readOnly) {
        if (sizeBytes <= 0 || sizeBytes % BlkDevice.SECTOR != 0) {
            throw new IllegalArgumentException(what + " size must be a positive multiple of 512: " + sizeBytes);
        }
        this.size = sizeBytes;
        this.readOnly = readOnly;
    }

    @Override
    public final long size() {
        return size;
    }

    @Override
    public final boolean readOnly() {
        return readOnly;
    }

    @Override
    public final boolean canDiscard() {
        return true;
    }

    @Override
    public final boolean canWriteZeroes() {
        return true;
    }
}
