package io.jvhost.blk;

import io.jvhost.core.sys.Epoll;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.Rados;
import io.jvhost.core.sys.RbdImage;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReferenceArray;

import org.jctools.queues.atomic.MpmcAtomicArrayQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;


/**
 * A Ceph RBD image through librbd: zero-copy asynchronous I/O straight between guest memory and
 * the cluster, nothing between the ring and librbd but a slot lookup.
 *
 * <p><b>Submission</b> ({@link #submit}, on a poller thread, never blocks): each request takes a
 * slot from a lock-free pool; the slot's preallocated iovec array gets the guest buffers' addresses
 * and librbd gets {@code rbd_aio_readv/writev}, {@code rbd_aio_flush}, or one {@code rbd_aio_discard}
 * / {@code rbd_aio_write_zeroes} per range, each with a completion that carries the slot's index
 * and no callback. A write the guest wants durable (write cache off) is followed by a flush before
 * it completes.
 *
 * <p><b>Completion, on the pollers</b>: the store owns an eventfd that librbd signals
 * ({@code rbd_set_image_notification}); {@link #drainCompletions()} takes what completed
 * ({@code rbd_poll_io_events}), reads each result, releases the completion and finishes requests
 * with {@link BlockRequest#complete}. Each device queue gets a {@link BlockStore.Queue} from
 * {@link #openQueue} whose completion fd is a duplicate of that eventfd (so two queues on one
 * poller are two epoll registrations) and whose {@code reap} drains: the queues' pollers collect
 * completions themselves, and no thread of the store sits between librbd and the ring. The image
 * has one event queue for all device queues: whichever poller drains first completes every
 * finished request (one of another queue wakes that queue's poller); a drain guard lets one
 * thread at a time in and makes it look again when another asked meanwhile, so no completion
 * waits for the next signal.
 *
 * <p>Requests given to {@link #submit} directly (a store wrapping this one) have no poller to
 * drain for them when no device queue runs: the first such call starts a small thread
 * ({@code rbd-<image>-completions}) that sleeps on the eventfd and drains.
 *
 * <p>Resize: {@link #refreshSize()} re-reads {@code rbd_get_size} (librbd follows header updates
 * from other clients, e.g. {@code rbd resize}), and the device announces the new capacity.
 */
public final class RbdStore extends ResizableStore {
    private static final Logger LOG = LoggerFactory.getLogger(RbdStore.class);
    /** Slots made at a time; the pool grows (rarely, kept for reuse) when every slot is in flight. */
    private static final int SLOT_BATCH = 256, MAX_SLOTS = 1 << 16;
    /** iovecs per slot to begin with: the device's seg_max plus room; a longer request grows its slot. */
    private static final int IOVECS = 128;
    private static final int POLL_BATCH = 64;
    private static final long CLOSE_WAIT_NANOS = TimeUnit.SECONDS.toNanos(30);

    private final Rados rados;
    private final RbdImage image;
    private final String imageName;
    private final Fd eventFd;
    private final Epoll epoll;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment polled;
    private final AtomicReferenceArray<Slot> slots = new AtomicReferenceArray<>(MAX_SLOTS);
    private final MpmcAtomicArrayQueue<Slot> free = new MpmcAtomicArrayQueue<>(MAX_SLOTS);
    private final AtomicInteger inflight = new AtomicInteger();
    /** The drain guard: drains asked for; the thread that raised it from 0 drains until it is 0 again. */
    private final AtomicInteger drainRequests = new AtomicInteger();
    /** The completion eventfd's duplicates handed to device queues; closed with the store. */
    private final java.util.List<Fd> queueFds = new java.util.concurrent.CopyOnWriteArrayList<>();
    /** Drains for requests submitted without a queue; started on the first such submission. */
    private volatile Thread completer;
    private int slotCount; // guarded by this
    private volatile boolean running = true;
    private volatile int lastLoggedErrno;
    private boolean closed;

    /** One request's state while librbd works on it. */
    private static final class Slot {
        final int index;
        /** Receives a new completion's handle. */
        final MemorySegment cell;
        MemorySegment iov;
        int iovCapacity;
        BlockRequest request;
        /** librbd operations not yet completed (+1 while a multi-range request is still being started). */
        final AtomicInteger pending = new AtomicInteger();
        volatile int status;
        /** A durable write: flush once the write completed, then complete. */
        boolean flushAfter;

        Slot(int index, Arena arena) {
            this.index = index;
            this.cell = arena.allocate(RbdImage.COMPLETION_SIZE, 8);
            this.iov = arena.allocate(RbdImage.IOVEC_SIZE * IOVECS, 8);
            this.iovCapacity = IOVECS;
        }
    }

    private RbdStore(Rados rados, RbdImage image, String imageName) throws NativeException {
        this.rados = rados;
        this.image = image;
        this.imageName = imageName;
        readSize();
        this.polled = arena.allocate(RbdImage.COMPLETION_SIZE * POLL_BATCH, 8);
        this.eventFd = EventFd.create();
        Epoll e = null;
        try {
            e = new Epoll(1);
            if (e.add(eventFd.get(), 0) < 0) {
                throw new NativeException("epoll_ctl on the RBD completion eventfd", LibC.EINVAL);
            }
            image.notifyCompletions(eventFd);
        } catch (NativeException | RuntimeException ex) {
            if (e != null) {
                e.close();
            }
            eventFd.close();
            arena.close();
            throw ex;
        }
        this.epoll = e;
        synchronized (this) {
            grow();
        }
    }

    /**
     * Connects with {@code conf} as {@code client.<id>} ({@code id} null: admin) and opens
     * {@code pool/image}. Control path; blocks up to about {@code timeout} when no monitor answers.
     * Throws {@link NativeException} naming what failed (ENOENT: no such pool or image; ETIMEDOUT:
     * unreachable monitors), {@link IllegalStateException} when librbd is not installed.
     */
    public static RbdStore open(Path conf, String id, String pool, String image, boolean readOnly, Duration timeout)
            throws NativeException {
        Rados rados = Rados.connect(conf, id, timeout);
        RbdImage img = null;
        try {
            img = rados.openImage(pool, image, readOnly);
            RbdStore store = new RbdStore(rados, img, image);
            LOG.info("rbd {}: {} bytes{}, as client.{} with {}", img.name(), store.size(),
                    readOnly ? ", read-only" : "", id == null ? "admin" : id, conf);
            return store;
        } catch (NativeException | RuntimeException e) {
            if (img != null) {
                try {
                    img.close();
                } catch (NativeException ignored) {
                    // already failing
                }
            }
            rados.close();
            throw e;
        }
    }

    /** The eventfd librbd signals on completions (each device queue watches a duplicate of it). */
    public Fd completionFd() {
        return eventFd;
    }

    /**
     * Device queue {@code index}'s way in: submits like {@link #submit}, and its poller drains
     * librbd's completions (watching a duplicate of {@link #completionFd()}). Control thread.
     */
    @Override
    public Queue openQueue(int index) {
        Fd dup;
        try {
            dup = eventFd.dup();
        } catch (NativeException e) {
            // Without an fd of its own the queue still drains on every duty cycle, and the thread
            // below covers its poller's sleep.
            LOG.warn("rbd {}: no completion fd for queue {} ({}); a store thread drains", image.name(), index, e.getMessage());
            startCompleter();
            return new RbdQueue(-1);
        }
        queueFds.add(dup);
        return new RbdQueue(dup.get());
    }

    /** A device queue on this image; its poller drains the image's completions. */
    private final class RbdQueue implements Queue {
        private final int fd;

        RbdQueue(int fd) {
            this.fd = fd;
        }

        @Override
        public void submit(BlockRequest[] requests, int count) {
            startAll(requests, count);
        }

        @Override
        public int completionFd() {
            return fd;
        }

        @Override
        public int reap(int budget) {
            return drainCompletions();
        }

        /**
         * librbd's threads (messenger, io_context) make the completions, and on a shared host the
         * OSDs' too: a spinning poller kept its CPU from them (QD 32 reads 0.73-0.88x qsd's IOPS
         * adaptive, 1.00x sleeping; perf/RESULTS.md 2026-12-07).
         */
        @Override
        public boolean sleepWhenIdle() {
            return true;
        }
    }

    /** Requests submitted and not yet completed. Any thread. */
    public int inflight() {
        return inflight.get();
    }

    @Override
    long deviceBytes() throws NativeException {
        return image.size();
    }

    @Override
    public boolean readOnly() {
        return image.readOnly();
    }

    @Override
    public boolean canDiscard() {
        return true;
    }

    @Override
    public String id() {
        return BlkDevice.serial(imageName);
    }

    // ---- submission: poller threads --------------------------------------------------------

    /**
     * Starts requests that come without a device queue (a store wrapping this one): they complete
     * through the store's own completion thread, started now if it is not running yet.
     */
    @Override
    public void submit(BlockRequest[] requests, int count) {
        if (completer == null) {
            startCompleter();
        }
        startAll(requests, count);
    }

    private void startAll(BlockRequest[] requests, int count) {
        for (int i = 0; i < count; i++) {
            BlockRequest r = requests[i];
            try {
                start(r);
            } catch (RuntimeException e) {
                // A bug, not an I/O error (librbd reports those as -errno): keep the poller alive.
                LOG.error("rbd {}: submitting {} failed", image.name(), r, e);
            }
        }
    }

    private void start(BlockRequest r) {
        Slot s = free.poll();
        if (s == null && (s = grow()) == null) {
            logError("no free request slot (" + MAX_SLOTS + " in flight)", 12);
            r.complete(BlockRequest.STATUS_IOERR);
            return;
        }
        inflight.incrementAndGet();
        s.request = r;
        s.status = BlockRequest.STATUS_OK;
        s.flushAfter = false;
        switch (r.type()) {
            case READ, WRITE -> startTransfer(s, r);
            case FLUSH -> {
                s.pending.set(1); // a volatile write after the slot's fields: the completer reads it first
                startOne(s, Op.FLUSH, 0, 0);
            }
            case DISCARD, WRITE_ZEROES -> startRanges(s, r);
        }
    }

    private enum Op { READ, WRITE, FLUSH, DISCARD, WRITE_ZEROES }

    private void startTransfer(Slot s, BlockRequest r) {
        int n = r.segmentCount();
        if (r.length() == 0 || n == 0) {
            s.pending.set(1);
            finishOne(s);
            return;
        }
        if (n > s.iovCapacity) {
            growIovecs(s, n);
        }
        r.writeIovecs(s.iov);
        boolean write = r.type() == BlockRequest.Type.WRITE;
        s.flushAfter = write && r.durable();
        s.pending.set(1);
        startOne(s, write ? Op.WRITE : Op.READ, r.offset(), n);
    }

    private void startRanges(Slot s, BlockRequest r) {
        Op op = r.type() == BlockRequest.Type.DISCARD ? Op.DISCARD : Op.WRITE_ZEROES;
        s.pending.set(r.rangeCount() + 1); // +1 until every range is started: none can finish the request early
        for (int g = 0; g < r.rangeCount(); g++) {
            long len = r.rangeLength(g);
            if (len == 0) {
                finishOne(s); // a range of no sectors is valid and does nothing
            } else {
                startOne(s, op, r.rangeOffset(g), len);
            }
        }
        finishOne(s);
    }

    /** Starts one librbd operation for slot {@code s}; on failure marks it failed and counts it done. */
    private void startOne(Slot s, Op op, long offset, long lengthOrIovecs) {
        int e = RbdImage.createCompletion(s.index, s.cell, 0);
        if (e == 0) {
            long c = RbdImage.completion(s.cell, 0);
            e = switch (op) {
                case READ -> image.aioReadv(s.iov, 0, (int) lengthOrIovecs, offset, c);
                case WRITE -> image.aioWritev(s.iov, 0, (int) lengthOrIovecs, offset, c);
                case FLUSH -> image.aioFlush(c);
                case DISCARD -> image.aioDiscard(offset, lengthOrIovecs, c);
                case WRITE_ZEROES -> image.aioWriteZeroes(offset, lengthOrIovecs, c);
            };
            if (e < 0) {
                RbdImage.releaseCompletion(c);
            }
        }
        if (e < 0) {
            logError("starting " + op + " failed", -e);
            s.status = BlockRequest.STATUS_IOERR;
            finishOne(s);
        }
    }

    /** One librbd operation of the slot's request is done; the last one completes the request. */
    private void finishOne(Slot s) {
        if (s.pending.decrementAndGet() != 0) {
            return;
        }
        BlockRequest r = s.request;
        int status = s.status;
        s.request = null;
        inflight.decrementAndGet();
        free.offer(s); // the slot may be reused at once: r and status are read already
        r.complete(status);
    }

    // ---- completion ------------------------------------------------------------------------

    /**
     * Takes every I/O librbd finished since the last call and completes the requests that are
     * done; returns how many librbd completions it took. Never blocks, allocates nothing. Any
     * thread (the device queues' pollers): while one thread drains, another's call returns 0 at
     * once and the draining thread looks again before it stops.
     */
    public int drainCompletions() {
        if (drainRequests.getAndIncrement() != 0) {
            return 0; // another thread drains, and looks again because of this call
        }
        int total = 0;
        int asked = 1;
        do {
            total += drainOnce();
            asked = drainRequests.addAndGet(-asked);
        } while (asked != 0);
        return total;
    }

    private int drainOnce() {
        int total = 0;
        while (true) {
            int n = image.pollIoEvents(polled, 0, POLL_BATCH);
            if (n <= 0) {
                if (n < 0) {
                    logError("rbd_poll_io_events failed", -n);
                }
                return total;
            }
            for (int i = 0; i < n; i++) {
                long c = RbdImage.completion(polled, i * RbdImage.COMPLETION_SIZE);
                int index = (int) RbdImage.completionArg(c);
                long result = RbdImage.returnValue(c);
                RbdImage.releaseCompletion(c);
                completed(slots.get(index), result);
            }
            total += n;
            if (n < POLL_BATCH) {
                return total;
            }
        }
    }

    private void completed(Slot s, long result) {
        s.pending.get(); // acquire: see the fields the submitting thread wrote before starting the I/O
        if (result < 0) {
            logError(s.request + " failed", (int) -result);
            s.status = BlockRequest.STATUS_IOERR;
        } else if (s.flushAfter) {
            s.flushAfter = false;
            s.pending.incrementAndGet(); // the flush replaces the write, which is counted done below
            startOne(s, Op.FLUSH, 0, 0);
        }
        finishOne(s);
    }

    private synchronized void startCompleter() {
        if (completer == null && running) {
            completer = Thread.ofPlatform().daemon(true).name("rbd-" + imageName + "-completions").start(this::completionLoop);
        }
    }

    /**
     * For requests submitted without a device queue: sleeps on the completion eventfd and drains,
     * until the store closes and nothing is in flight (or 30 s passed).
     */
    private void completionLoop() {
        long stopDeadline = 0;
        while (true) {
            if (!running) {
                if (inflight.get() == 0) {
                    return;
                }
                if (stopDeadline == 0) {
                    stopDeadline = System.nanoTime() + CLOSE_WAIT_NANOS;
                } else if (System.nanoTime() - stopDeadline > 0) {
                    LOG.warn("rbd {}: {} requests still in flight after {} s; closing anyway", image.name(),
                            inflight.get(), TimeUnit.NANOSECONDS.toSeconds(CLOSE_WAIT_NANOS));
                    return;
                }
            }
            try {
                epoll.await(100);
                LibC.eventfdDrain(eventFd.get()); // clear first: a completion after this signals again
                drainCompletions();
            } catch (RuntimeException e) {
                LOG.error("rbd {}: draining completions failed", image.name(), e);
            }
        }
    }

    /** Drains until nothing is in flight, up to 30 s. Control thread, at close. */
    private void awaitInflight() {
        long deadline = System.nanoTime() + CLOSE_WAIT_NANOS;
        while (true) {
            drainCompletions();
            if (inflight.get() == 0) {
                return;
            }
            if (System.nanoTime() - deadline > 0) {
                LOG.warn("rbd {}: {} requests still in flight after {} s; closing anyway", image.name(),
                        inflight.get(), TimeUnit.NANOSECONDS.toSeconds(CLOSE_WAIT_NANOS));
                return;
            }
            epoll.await(100);
            LibC.eventfdDrain(eventFd.get());
        }
    }

    // ---- slots -----------------------------------------------------------------------------

    /** Makes {@link #SLOT_BATCH} more slots; returns one of them for the caller, or null at the limit. */
    private synchronized Slot grow() {
        Slot s = free.poll(); // another thread may have grown the pool meanwhile
        if (s != null) {
            return s;
        }
        if (slotCount + SLOT_BATCH > MAX_SLOTS) {
            return null;
        }
        if (slotCount > 0) {
            LOG.info("rbd {}: {} requests in flight; {} more request slots", image.name(), slotCount, SLOT_BATCH);
        }
        Slot first = null;
        for (int i = 0; i < SLOT_BATCH; i++) {
            Slot n = new Slot(slotCount, arena);
            slots.set(slotCount++, n);
            if (first == null) {
                first = n;
            } else {
                free.offer(n);
            }
        }
        return first;
    }

    private void growIovecs(Slot s, int n) {
        int capacity = Math.max(n, 2 * s.iovCapacity);
        synchronized (this) { // Arena.allocate is thread-safe for a shared arena; the lock keeps growth rare and visible in logs
            s.iov = arena.allocate(RbdImage.IOVEC_SIZE * capacity, 8);
        }
        s.iovCapacity = capacity;
    }

    private void logError(String what, int errno) {
        if (errno != lastLoggedErrno) { // once per distinct error, until another one comes
            lastLoggedErrno = errno;
            LOG.warn("rbd {}: {}: errno {}", image.name(), what, errno);
        }
    }

    /**
     * Waits (up to 30 s) for requests in flight, draining them itself (or stops the completion
     * thread once it has), closes the image
     * (librbd flushes its cache) and the cluster connection. Call once nothing submits any more;
     * closing again does nothing. Throws if the final flush failed.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                return;
            }
            closed = true;
        }
        synchronized (this) {
            running = false;
        }
        Thread t = completer;
        if (t != null) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        } else {
            awaitInflight(); // the pollers have stopped: drain here what is still on its way
        }
        NativeException failed = null;
        try {
            image.close();
        } catch (NativeException e) {
            failed = e;
        }
        rados.close();
        epoll.close();
        for (Fd f : queueFds) {
            f.close();
        }
        eventFd.close();
        arena.close();
        if (failed != null) {
            throw new IllegalStateException("closing rbd " + image.name() + ": " + failed.getMessage(), failed);
        }
        LOG.info("rbd {} flushed and closed", image.name());
    }

    @Override
    public String toString() {
        return "rbd " + image.name();
    }
}
