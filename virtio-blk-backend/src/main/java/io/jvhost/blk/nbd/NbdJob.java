package io.jvhost.blk.nbd;

import io.jvhost.blk.BlockRequest;

import java.util.concurrent.CompletableFuture;

import static io.jvhost.blk.nbd.Nbd.*;

/**
 * One request of the guest in flight: the commands it became, and how they went. Shared by the
 * store's Netty path ({@link NbdStore}, loop only) and the queues' poller path ({@link NbdQueue},
 * poller only); pooled and reused, never shared between threads.
 */
final class NbdJob {
    BlockRequest request;
    int outstanding;
    int status;
    boolean flushAfter;
    /** Netty path only: the store's own final flush, which has no request. */
    CompletableFuture<Integer> internal;

    /** One of the job's commands failed with NBD error {@code error}: the job keeps the first failure. */
    void failed(int command, int error) {
        int s = command == CMD_WRITE_ZEROES && error == ENOTSUP ? BlockRequest.STATUS_UNSUPP
                : command == CMD_TRIM && error == ENOTSUP ? BlockRequest.STATUS_OK // advisory
                : BlockRequest.STATUS_IOERR;
        if (s != BlockRequest.STATUS_OK && status == BlockRequest.STATUS_OK) {
            status = s;
        }
    }

    /** Empty again, for the pool. */
    void clear() {
        request = null;
        internal = null;
        status = BlockRequest.STATUS_OK;
        flushAfter = false;
        outstanding = 0;
    }
}
