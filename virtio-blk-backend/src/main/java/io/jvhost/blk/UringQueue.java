package io.jvhost.blk;

import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.IoUring;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * One device queue of a {@link FileStore} on its own io_uring: the queue's poller is the ring's only
 * submitter and reaper, and no other thread touches a request between the virtqueue and the kernel.
 *
 * <p>Each request takes a slot (kept for reuse, with its preallocated iovec array): READ and WRITE
 * become one READV / WRITEV straight between the file and the guest buffers, FLUSH one FSYNC
 * (DATASYNC), DISCARD and WRITE_ZEROES one FALLOCATE per range (punch hole or zero range, keeping
 * the size). A write the guest wants durable is followed by an FSYNC once it completed. A short
 * transfer goes on from where it stopped (end of file: an I/O error, as on the thread pool);
 * EAGAIN, ENOMEM and EINTR results are retried. The SQE's user data is the slot's index and, for a
 * range, the range's index in the high half.
 *
 * <p>No more operations are in flight than the completion ring holds, so it never overflows
 * (the kernel would keep the extra completions anyway, and {@link #reap} moves them in); operations
 * that do not fit wait, in order, in a deferred list. A failed {@code io_uring_enter} (EAGAIN,
 * ENOMEM, EBUSY, EINTR) leaves the entries in the ring for the next duty cycle. WRITE_ZEROES on a
 * file system without zero-range (tmpfs) is handed to the store's I/O workers, which write zeros.
 *
 * <p>Completions signal the ring's eventfd, which the poller watches. Poller thread only, except
 * {@link #close()} (control thread, once the poller no longer uses the queue).
 */
final class UringQueue implements BlockStore.Queue {
    private static final Logger LOG = LoggerFactory.getLogger(UringQueue.class);
    static final int EINTR = 4, EIO = 5, EAGAIN = 11, ENOMEM = 12, EFAULT = 14, EBUSY = 16, EOPNOTSUPP = 95;
    /** An operation failing with EAGAIN, ENOMEM or EINTR is retried this often before the request fails. */
    static final int MAX_RETRIES = 1000;
    /** The most iovecs one READV / WRITEV takes (IOV_MAX); a longer request goes on as a short transfer. */
    static final int IOV_MAX = 1024;
    private static final int INITIAL_SLOTS = 64, INITIAL_IOVECS = 8;

    private final FileStore store;
    private final int index;
    private final int fd;
    private final IoUring ring;
    private final Fd eventFd;
    private final Arena arena = Arena.ofShared();
    /** Completions read in one go, before any is processed (processing may enter the kernel). */
    private final long[] cqeUserData;
    private final int[] cqeResults;
    /** The user data of entries the kernel refused for good (enter() may run while a reap walks cqeUserData). */
    private final long[] refused;
    /** Operations in the ring or in the kernel whose completion is not reaped yet; at most {@link #maxOps}. */
    private int opsInFlight;
    /** The completion ring's size; a test may raise it to make the completion ring overflow. */
    int maxOps;
    private Slot[] slots = new Slot[0];
    private int[] freeSlots = new int[0];
    private int freeCount;
    /** User data of operations not in the ring yet (no room, or too many in flight), oldest first. */
    private long[] deferred = new long[256];
    private int deferredHead, deferredCount;
    /** The last io_uring_enter failed for now: try again on the next duty cycle. */
    private boolean retrySubmit;
    private int lastSubmitErrno;
    private boolean closed;
    // Tests: the next failEnters submissions fail with -failErrno without entering the kernel;
    // iovMax below IOV_MAX splits transfers so that they go on as short ones.
    volatile int failEnters;
    int failErrno;
    int iovMax = IOV_MAX;
    /** Operations issued, io_uring_enter calls that failed, times the completion ring had overflowed; plain counters of the poller. */
    long operations, submitFailures, overflows;

    /** One request's state while the ring works on it. */
    private static final class Slot {
        final int index;
        BlockRequest request;
        MemorySegment iov;
        int iovCapacity;
        /** Transfers: the first iovec not fully moved, how many are left, where in the file and how much. */
        int iovFirst, iovLeft;
        long position, remaining;
        /** The operation the slot runs now: READV, WRITEV, FSYNC or FALLOCATE (its mode in fallocateMode). */
        int opcode, fallocateMode;
        int pending, retries, error;
        boolean flushAfter, zeroUnsupported;

        Slot(int index) {
            this.index = index;
        }
    }

    UringQueue(FileStore store, int index, int entries) throws NativeException {
        this.store = store;
        this.index = index;
        this.fd = store.file().fd();
        IoUring r = IoUring.open(entries);
        Fd ev = null;
        try {
            ev = EventFd.create();
            int e = r.registerEventFd(ev.get());
            if (e < 0) {
                throw new NativeException("registering the io_uring eventfd", -e);
            }
        } catch (NativeException | RuntimeException ex) {
            if (ev != null) {
                ev.close();
            }
            r.close();
            arena.close();
            throw ex;
        }
        this.ring = r;
        this.eventFd = ev;
        this.maxOps = r.cqEntries();
        this.cqeUserData = new long[r.cqEntries()];
        this.cqeResults = new int[r.cqEntries()];
        this.refused = new long[r.sqEntries()];
        growSlots(INITIAL_SLOTS);
    }

    int index() {
        return index;
    }

    @Override
    public int completionFd() {
        return eventFd.get();
    }

    // ---- submission ------------------------------------------------------------------------

    @Override
    public void submit(BlockRequest[] requests, int count) {
        for (int i = 0; i < count; i++) {
            BlockRequest r = requests[i];
            try {
                start(r);
            } catch (RuntimeException e) {
                // A bug, not an I/O error (those come back as -errno): keep the poller alive.
                LOG.error("queue {}: starting {} on {} failed", index, r, store.file().path(), e);
                r.complete(BlockRequest.STATUS_IOERR);
            }
        }
        if (ring.unsubmitted() > 0) {
            enter();
        }
    }

    private void start(BlockRequest r) {
        switch (r.type()) {
            case READ, WRITE -> {
                int n = r.segmentCount();
                if (r.length() == 0 || n == 0) {
                    r.complete(BlockRequest.STATUS_OK);
                    return;
                }
                Slot s = takeSlot(r);
                if (n > s.iovCapacity) {
                    growIovecs(s, n);
                }
                r.writeIovecs(s.iov);
                boolean write = r.type() == BlockRequest.Type.WRITE;
                s.opcode = write ? IoUring.OP_WRITEV : IoUring.OP_READV;
                s.iovFirst = 0;
                s.iovLeft = n;
                s.position = r.offset();
                s.remaining = r.length();
                s.flushAfter = write && r.durable();
                issue(s, 0);
            }
            case FLUSH -> {
                Slot s = takeSlot(r);
                s.opcode = IoUring.OP_FSYNC;
                issue(s, 0);
            }
            case DISCARD, WRITE_ZEROES -> startRanges(r);
        }
    }

    private void startRanges(BlockRequest r) {
        boolean zero = r.type() == BlockRequest.Type.WRITE_ZEROES;
        if (zero && store.zeroesOnWorkers()) {
            store.runOnWorkers(r); // no zero-range here: the workers write zeros
            return;
        }
        int mode = !zero || (store.canDiscard() && r.unmap()) ? FileStore.PUNCH_HOLE : FileStore.ZERO_RANGE;
        Slot s = null;
        for (int g = 0; g < r.rangeCount(); g++) {
            if (r.rangeLength(g) == 0) {
                continue; // a range of no sectors is valid; fallocate would fail it with EINVAL
            }
            if (s == null) {
                s = takeSlot(r);
                s.opcode = IoUring.OP_FALLOCATE;
                s.fallocateMode = mode;
            }
            issue(s, g);
        }
        if (s == null) {
            r.complete(BlockRequest.STATUS_OK);
        }
    }

    /** Counts one more operation of slot {@code s} ({@code range}: which range) and puts it in the ring, or defers it. */
    private void issue(Slot s, int range) {
        s.pending++;
        long userData = s.index | ((long) range << 32);
        if (deferredCount > 0 || !tryPrepare(userData)) {
            defer(userData);
        }
    }

    /** Prepares the SQE for {@code userData}'s operation; false when the ring has no room for it now. */
    private boolean tryPrepare(long userData) {
        if (opsInFlight >= maxOps) {
            return false;
        }
        if (ring.sqFree() == 0) {
            enter();
            if (ring.sqFree() == 0) {
                return false;
            }
        }
        Slot s = slots[(int) userData];
        boolean prepared = switch (s.opcode) {
            case IoUring.OP_READV, IoUring.OP_WRITEV -> ring.prepare(s.opcode, fd, s.position,
                    s.iov.address() + s.iovFirst * IoUring.IOVEC_SIZE, Math.min(s.iovLeft, iovMax), 0, userData);
            case IoUring.OP_FSYNC -> ring.prepare(IoUring.OP_FSYNC, fd, 0, 0, 0, IoUring.FSYNC_DATASYNC, userData);
            default -> { // FALLOCATE: length in addr, mode in len
                BlockRequest r = s.request;
                int g = (int) (userData >>> 32);
                yield ring.prepare(IoUring.OP_FALLOCATE, fd, r.rangeOffset(g), r.rangeLength(g), s.fallocateMode, 0, userData);
            }
        };
        if (prepared) {
            opsInFlight++;
            operations++;
        }
        return prepared;
    }

    private void defer(long userData) {
        if (deferredCount == deferred.length) { // rare: kept for reuse
            long[] bigger = new long[2 * deferred.length];
            for (int i = 0; i < deferredCount; i++) {
                bigger[i] = deferred[(deferredHead + i) % deferred.length];
            }
            deferred = bigger;
            deferredHead = 0;
        }
        deferred[(deferredHead + deferredCount) % deferred.length] = userData;
        deferredCount++;
    }

    /** Puts deferred operations into the ring, oldest first, as far as there is room. */
    private void runDeferred() {
        while (deferredCount > 0 && tryPrepare(deferred[deferredHead])) {
            deferredHead = (deferredHead + 1) % deferred.length;
            deferredCount--;
        }
    }

    /** Hands the prepared entries to the kernel; on a failure for now, tries again next cycle. */
    private void enter() {
        int r;
        if (failEnters > 0) {
            failEnters--;
            r = -failErrno;
        } else {
            r = ring.submit();
        }
        if (r >= 0) {
            retrySubmit = ring.unsubmitted() > 0;
            return;
        }
        submitFailures++;
        int errno = -r;
        if (errno == EAGAIN || errno == ENOMEM || errno == EBUSY || errno == EINTR) {
            retrySubmit = true; // the entries stay in the ring: the next cycle submits them
            if (errno != lastSubmitErrno) {
                lastSubmitErrno = errno;
                LOG.info("queue {} on {}: io_uring_enter: errno {}; retrying", index, store.file().path(), errno);
            }
            if (ring.overflowed()) {
                overflows++;
                ring.flushOverflow();
            }
            return;
        }
        // Anything else is a bug (EBADF, EINVAL, EFAULT): fail what the kernel did not take.
        LOG.error("queue {} on {}: io_uring_enter failed: errno {}; failing {} operations", index,
                store.file().path(), errno, ring.unsubmitted());
        retrySubmit = false;
        int n = ring.unsubmitted();
        for (int i = 0; i < n; i++) {
            refused[i] = ring.unsubmittedUserData(i);
        }
        ring.discardUnsubmitted();
        for (int i = 0; i < n; i++) {
            opsInFlight--;
            Slot s = slots[(int) refused[i]];
            s.error = -EIO;
            if (--s.pending == 0) {
                finish(s);
            }
        }
    }

    // ---- completion ------------------------------------------------------------------------

    @Override
    public int reap(int budget) {
        if (closed) {
            return 0;
        }
        int work = 0;
        if (retrySubmit) {
            enter();
        }
        if (ring.overflowed()) { // only if more were in flight than the ring holds: never with maxOps
            overflows++;
            ring.flushOverflow();
        }
        int n = Math.min(ring.ready(), Math.min(budget, cqeUserData.length));
        if (n > 0) {
            for (int i = 0; i < n; i++) {
                cqeUserData[i] = ring.completionUserData(i);
                cqeResults[i] = ring.completionResult(i);
            }
            ring.consume(n);
            opsInFlight -= n;
            for (int i = 0; i < n; i++) {
                completed(cqeUserData[i], cqeResults[i]);
            }
            work += n;
        }
        if (deferredCount > 0) {
            runDeferred();
        }
        if (ring.unsubmitted() > 0) {
            enter();
        }
        return retrySubmit ? work + 1 : work;
    }

    /** One operation of a slot finished with {@code res}. */
    private void completed(long userData, int res) {
        Slot s = slots[(int) userData];
        s.pending--;
        if ((res == -EAGAIN || res == -ENOMEM || res == -EINTR) && s.retries++ < MAX_RETRIES) {
            issue(s, (int) (userData >>> 32)); // the same operation again
            return;
        }
        switch (s.opcode) {
            case IoUring.OP_READV, IoUring.OP_WRITEV -> {
                if (res < 0) {
                    s.error = res;
                } else if (res == 0) {
                    s.error = -EIO; // the file ends before the request: an I/O error, as on the thread pool
                } else if (res < s.remaining) {
                    int first = advance(s.iov, s.iovFirst, res);
                    s.iovLeft -= first - s.iovFirst;
                    s.iovFirst = first;
                    s.position += res;
                    s.remaining -= res;
                    issue(s, 0); // the rest, from where the short transfer stopped
                    return;
                } else if (s.flushAfter) {
                    s.flushAfter = false;
                    s.opcode = IoUring.OP_FSYNC;
                    issue(s, 0);
                    return;
                }
            }
            case IoUring.OP_FSYNC -> {
                if (res < 0) {
                    s.error = res;
                }
            }
            default -> { // FALLOCATE
                if (res == -EOPNOTSUPP) {
                    // Discard is advisory; zeroing is done by the workers instead (writing zeros).
                    s.zeroUnsupported |= s.request.type() == BlockRequest.Type.WRITE_ZEROES;
                } else if (res < 0 && s.error == 0) {
                    s.error = res;
                }
            }
        }
        if (s.pending == 0) {
            finish(s);
        }
    }

    /**
     * Moves a short transfer of {@code done} bytes forward in the iovec array {@code iov} (the slot's
     * own copy of the guest's buffer list) whose first unfinished entry is {@code first}: skips the
     * entries it filled and shortens the one it stopped in. Returns the new first unfinished entry.
     */
    static int advance(MemorySegment iov, int first, long done) {
        long left = done;
        int i = first;
        while (left > 0) {
            long at = i * IoUring.IOVEC_SIZE;
            long len = iov.get(JAVA_LONG, at + IoUring.IOV_LEN_OFFSET);
            if (left >= len) {
                left -= len;
                i++;
            } else {
                iov.set(JAVA_LONG, at + IoUring.IOV_BASE_OFFSET, iov.get(JAVA_LONG, at + IoUring.IOV_BASE_OFFSET) + left);
                iov.set(JAVA_LONG, at + IoUring.IOV_LEN_OFFSET, len - left);
                left = 0;
            }
        }
        return i;
    }

    /** Every operation of the slot is done: completes its request (or hands it to the workers) and frees the slot. */
    private void finish(Slot s) {
        BlockRequest r = s.request;
        boolean toWorkers = s.zeroUnsupported && s.error == 0;
        int err = s.error == -EFAULT ? -EIO : s.error;
        s.request = null;
        freeSlots[freeCount++] = s.index;
        if (toWorkers) {
            store.zeroRangeUnsupported();
            store.runOnWorkers(r); // they zero by writing zeros; the ranges already punched stay zero
            return;
        }
        if (err != 0) {
            store.logFailure(r, -err);
        }
        r.complete(err == 0 ? BlockRequest.STATUS_OK : BlockRequest.STATUS_IOERR);
    }

    // ---- slots -----------------------------------------------------------------------------

    private Slot takeSlot(BlockRequest r) {
        if (freeCount == 0) {
            growSlots(2 * slots.length);
        }
        Slot s = slots[freeSlots[--freeCount]];
        s.request = r;
        s.pending = 0;
        s.retries = 0;
        s.error = 0;
        s.flushAfter = false;
        s.zeroUnsupported = false;
        return s;
    }

    /** Rare: more requests in flight than ever before on this queue. Slots are kept. */
    private void growSlots(int capacity) {
        int old = slots.length;
        slots = Arrays.copyOf(slots, capacity);
        freeSlots = Arrays.copyOf(freeSlots, capacity);
        for (int i = old; i < capacity; i++) {
            Slot s = new Slot(i);
            s.iov = arena.allocate(IoUring.IOVEC_SIZE * INITIAL_IOVECS, 8);
            s.iovCapacity = INITIAL_IOVECS;
            slots[i] = s;
            freeSlots[freeCount++] = i;
        }
    }

    /** Rare: a request with more segments than the slot had iovecs for; the bigger array is kept. */
    private void growIovecs(Slot s, int n) {
        int capacity = Math.max(n, 2 * s.iovCapacity);
        s.iov = arena.allocate(IoUring.IOVEC_SIZE * capacity, 8);
        s.iovCapacity = capacity;
    }

    /** Requests this queue has in the ring or deferred. Poller thread (or a test once it is idle). */
    int requestsInFlight() {
        return slots.length - freeCount;
    }

    /**
     * Closes the ring (the kernel finishes or cancels what is still in flight) and frees the slots.
     * Control thread, once the queue's poller no longer calls it (the backend is closed).
     */
    void close() {
        if (closed) {
            return;
        }
        closed = true;
        int left = requestsInFlight();
        if (left > 0) {
            LOG.warn("queue {} on {}: closing with {} requests in flight", index, store.file().path(), left);
        }
        ring.close();
        eventFd.close();
        arena.close();
    }

    @Override
    public String toString() {
        return "io_uring queue " + index + " of " + store.file().path();
    }
}
