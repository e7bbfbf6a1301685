package io.jvhost.blk;

import io.jvhost.core.sys.BlockFile;
import io.jvhost.core.sys.IoUring;
import io.jvhost.core.sys.FileCalls;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A raw image file or block device, on one of three I/O engines:
 * <ul>
 * <li>{@link IoEngine#URING io_uring} (the default where the kernel allows it): one ring per device
 *     queue, its poller the only submitter; reads and writes go straight between the file and
 *     guest memory, completions come back on the poller through the ring's eventfd (see
 *     {@link UringQueue}). No thread of the store sits between the ring and the I/O.
 * <li>{@link IoEngine#INLINE inline}, for files in memory (tmpfs, ramfs) on kernels where those
 *     cannot read or write without blocking (RWF_NOWAIT fails EOPNOTSUPP, as on 6.18): io_uring
 *     would hand every request to a kernel worker thread, for what is a memory copy, so the
 *     queue's poller does the positional read or write itself and completes the request at once,
 *     as the RAM disk does. Forced on a real disk it blocks the poller on each I/O.
 * <li>{@link IoEngine#THREADS threads}, the fallback: I/O workers do positional reads and writes
 *     and complete from their threads.
 * </ul>
 * Both do fdatasync for FLUSH (and for writes while the guest's write cache is off), fallocate
 * punch-hole for DISCARD and zero-range (or punch-hole with unmap) for WRITE_ZEROES, writing
 * zeros where the file system cannot (on the I/O workers). {@link IoEngine#AUTO} takes inline for a
 * file in memory without non-blocking I/O, else io_uring unless it is unavailable (no such system
 * call, forbidden by {@code kernel.io_uring_disabled} or seccomp, a kernel before 5.6), and says
 * which in the log, once. Requests given to {@link #submit} directly, without a
 * queue from {@link #openQueue}, always go to the workers (started on first use under io_uring).
 */
public final class FileStore extends ResizableStore {
    private static final Logger LOG = LoggerFactory.getLogger(FileStore.class);
    private static final int EIO = 5, EFAULT = 14;
    /** The system property that picks the engine of stores made without one: auto, uring or threads. */
    public static final String ENGINE_PROPERTY = "jvhost.io-engine";
    /** Submission entries per ring (twice as many completion entries). */
    static final int RING_ENTRIES = 256;
    static final int PUNCH_HOLE = FileCalls.FALLOC_FL_PUNCH_HOLE | FileCalls.FALLOC_FL_KEEP_SIZE;
    static final int ZERO_RANGE = FileCalls.FALLOC_FL_ZERO_RANGE | FileCalls.FALLOC_FL_KEEP_SIZE;
    private static final AtomicBoolean ENGINE_LOGGED = new AtomicBoolean(), INLINE_LOGGED = new AtomicBoolean();

    /** How a file store does its I/O. */
    public enum IoEngine {
        /** Inline for files in memory without non-blocking I/O (tmpfs on kernels like 6.18), else io_uring where available, else threads. */
        AUTO,
        /** io_uring, one ring per device queue, completions on the queue's poller. */
        URING,
        /** A pool of I/O worker threads doing blocking calls. */
        THREADS,
        /** Blocking calls on the queue's poller itself, completing at once: for files in memory. */
        INLINE;

        /** Parses {@code auto}, {@code uring}, {@code inline} or {@code threads} (any case). */
        public static IoEngine parse(String name) {
            return switch (name.trim().toLowerCase(Locale.ROOT)) {
                case "auto" -> AUTO;
                case "uring", "io_uring", "io-uring" -> URING;
                case "threads" -> THREADS;
                case "inline" -> INLINE;
                default -> throw new IllegalArgumentException("unknown I/O engine '" + name + "': auto, uring, inline or threads");
            };
        }

        /** The engine the system property {@code jvhost.io-engine} names; {@link #AUTO} when unset. */
        public static IoEngine configured() {
            String v = System.getProperty(ENGINE_PROPERTY);
            return v == null || v.isBlank() ? AUTO : parse(v);
        }
    }

    private final BlockFile file;
    private final int ioWorkerCount;
    private final IoEngine engine;
    /** The workers: at once on the threads engine, on first use on io_uring. */
    private volatile IoWorkers<BlockRequest> workers;
    private final List<UringQueue> queues = new CopyOnWriteArrayList<>();
    private final boolean holes;
    /** Submission entries of the rings opened from now on (tests make them small). */
    int ringEntries = RING_ENTRIES;
    /** The file system has no zero-range: WRITE_ZEROES goes to the workers, which write zeros. */
    private volatile boolean zeroesOnWorkers;
    private boolean closed;

    /**
     * Opens {@code path}; {@code direct} uses O_DIRECT (the guest's buffers must then be aligned).
     * The engine is the one {@link IoEngine#configured()} names ({@link IoEngine#AUTO} by default).
     */
    public FileStore(Path path, boolean readOnly, boolean direct, int ioWorkers) throws NativeException {
        this(path, readOnly, direct, ioWorkers, IoEngine.configured());
    }

    /**
     * Opens {@code path} on {@code engine}; {@code ioWorkers} threads serve the threads engine (and,
     * on io_uring or inline, what those cannot do: writing zeros). Throws when {@link IoEngine#URING}
     * is asked for and io_uring is unavailable.
     */
    public FileStore(Path path, boolean readOnly, boolean direct, int ioWorkers, IoEngine engine) throws NativeException {
        if (ioWorkers < 1) {
            throw new IllegalArgumentException("ioWorkers must be at least 1: " + ioWorkers);
        }
        this.file = BlockFile.open(path, readOnly, direct);
        try {
            this.engine = resolve(engine, file);
        } catch (RuntimeException e) {
            file.close();
            throw e;
        }
        readSize();
        this.holes = !file.isBlockDevice();
        this.ioWorkerCount = ioWorkers;
        if (this.engine == IoEngine.THREADS) {
            this.workers = newWorkers();
        }
    }

    private static IoEngine resolve(IoEngine asked, BlockFile file) {
        if (asked == IoEngine.THREADS || asked == IoEngine.INLINE) {
            return asked;
        }
        if (asked == IoEngine.AUTO && file.inMemoryWithoutNoWait()) {
            if (INLINE_LOGGED.compareAndSet(false, true)) {
                LOG.info("file stores on tmpfs complete inline on the poller: no non-blocking I/O there "
                        + "(io_uring would hand each request to a kernel worker); --io-engine uring or threads to change");
            }
            return IoEngine.INLINE;
        }
        String why = IoUring.unavailableReason();
        if (asked == IoEngine.URING) {
            if (why != null) {
                throw new IllegalStateException("the uring I/O engine was asked for, but io_uring is unavailable: "
                        + why + "; use the threads engine (or auto)");
            }
            return IoEngine.URING;
        }
        if (ENGINE_LOGGED.compareAndSet(false, true)) {
            if (why == null) {
                LOG.info("file stores use io_uring (one ring per queue, completions on the pollers)");
            } else {
                LOG.warn("io_uring unavailable ({}): file stores use I/O worker threads", why);
            }
        }
        return why == null ? IoEngine.URING : IoEngine.THREADS;
    }

    /** The engine this store runs on: {@link IoEngine#URING}, {@link IoEngine#INLINE} or {@link IoEngine#THREADS}. */
    public IoEngine engine() {
        return engine;
    }

    BlockFile file() {
        return file;
    }

    private IoWorkers<BlockRequest> newWorkers() {
        return new IoWorkers<>("blk-" + file.path().getFileName(), ioWorkerCount, 4096, this::execute);
    }

    /** The workers, started on first use. Any thread. */
    private IoWorkers<BlockRequest> workers() {
        IoWorkers<BlockRequest> w = workers;
        if (w == null) {
            synchronized (this) {
                w = workers;
                if (w == null) {
                    workers = w = newWorkers();
                }
            }
        }
        return w;
    }

    /** Hands one request to the I/O workers (the threads engine's path; io_uring's for what its ring cannot do). */
    void runOnWorkers(BlockRequest r) {
        IoWorkers<BlockRequest> w = workers();
        w.submit(r);
        w.signal();
    }

    boolean zeroesOnWorkers() {
        return zeroesOnWorkers;
    }

    /** A ring saw zero-range fail with EOPNOTSUPP: from now on WRITE_ZEROES goes to the workers. */
    void zeroRangeUnsupported() {
        if (!zeroesOnWorkers) {
            zeroesOnWorkers = true;
            LOG.info("{}: no fallocate zero-range here; WRITE_ZEROES writes zeros on the I/O workers", file.path());
        }
    }

    void logFailure(BlockRequest r, int errno) {
        LOG.warn("{} on {} failed: errno {}", r, file.path(), errno);
    }

    /**
     * On io_uring, a ring of its own for device queue {@code index}, completing on that queue's
     * poller; inline, the poller's own calls; on threads (or if the ring cannot be set up: logged)
     * the workers. Control thread.
     */
    @Override
    public Queue openQueue(int index) {
        if (engine == IoEngine.INLINE) {
            return new Queue() {
                @Override
                public void submit(BlockRequest[] requests, int count) {
                    for (int i = 0; i < count; i++) {
                        executeInline(requests[i]);
                    }
                }
            };
        }
        if (engine == IoEngine.URING) {
            try {
                UringQueue q = new UringQueue(this, index, ringEntries);
                queues.add(q);
                return q;
            } catch (NativeException e) {
                LOG.warn("{}: no io_uring for queue {} ({}); it uses I/O worker threads", file.path(), index, e.getMessage());
            }
        }
        return super.openQueue(index);
    }

    /** The rings opened so far (tests). */
    List<UringQueue> queues() {
        return queues;
    }

    @Override
    long deviceBytes() throws NativeException {
        return file.size();
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
    public String id() {
        String name = file.path().getFileName().toString();
        return BlkDevice.serial(name);
    }

    @Override
    public String toString() {
        return "file " + file.path();
    }

    /**
     * Inline, the requests are done here and now; else they go to the I/O workers, whatever the
     * engine (a queue from {@link #openQueue} is the io_uring path).
     */
    @Override
    public void submit(BlockRequest[] requests, int count) {
        if (engine == IoEngine.INLINE) {
            for (int i = 0; i < count; i++) {
                executeInline(requests[i]);
            }
            return;
        }
        IoWorkers<BlockRequest> w = workers();
        for (int i = 0; i < count; i++) {
            w.submit(requests[i]);
        }
        w.signal();
    }

    /**
     * The inline engine, on the poller: everything but zeroing without zero-range (writing zeros
     * could take long) is done here and completes at once. Allocation-free.
     */
    private void executeInline(BlockRequest r) {
        if (r.type() != BlockRequest.Type.WRITE_ZEROES) {
            execute(r);
            return;
        }
        if (zeroesOnWorkers) {
            runOnWorkers(r);
            return;
        }
        int err = 0;
        for (int g = 0; g < r.rangeCount() && err == 0; g++) {
            long off = r.rangeOffset(g), len = r.rangeLength(g);
            if (len != 0) { // a range of no sectors is valid; fallocate would fail it with EINVAL
                err = holes && r.unmap() ? file.punchHole(off, len) : file.zeroRange(off, len);
            }
        }
        if (err == -95) {
            zeroRangeUnsupported();
            runOnWorkers(r); // they zero by writing zeros; the ranges already zeroed stay zero
            return;
        }
        if (err != 0) {
            logFailure(r, -err);
        }
        r.complete(err == 0 ? BlockRequest.STATUS_OK : BlockRequest.STATUS_IOERR);
    }

    /** On an I/O worker (or, inline, on the poller). */
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
            logFailure(r, -err);
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
     * Stops the I/O workers and closes the rings, then makes every write durable (fdatasync) before
     * closing the file: a guest may have written without flushing, and the backend is going away.
     * Throws if that sync fails. Call once nothing submits any more (the backend is closed);
     * closing again does nothing.
     */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (workers != null) {
            workers.close();
        }
        for (UringQueue q : queues) {
            q.close();
        }
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
