package io.jvhost.blk;

import static io.jvhost.core.device.VirtioFeatures.*;

import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.metrics.MetricSink;
import io.jvhost.core.ring.ChainCursor;
import io.jvhost.core.ring.DescriptorChain;
import io.jvhost.core.ring.VirtQueue;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

import org.jctools.queues.atomic.MpscAtomicArrayQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static io.jvhost.blk.BlockRequest.STATUS_IOERR;
import static io.jvhost.blk.BlockRequest.STATUS_OK;
import static io.jvhost.blk.BlockRequest.STATUS_UNSUPP;

/**
 * One virtio-blk request queue: parses each chain (header, data, status byte; any framing),
 * validates it against the disk, hands batches to the store's queue ({@link BlockStore.Queue}), and
 * publishes completions that come back through a lock-free MPSC queue. A store that completes on
 * the poller is reaped at the top of each cycle and right after each submission (I/O that finished
 * inline, e.g. from the page cache, is published in the same cycle; it skips the MPSC queue); its
 * completion fd is this handler's {@link #wakeupFd()}. Poller thread, except {@link #completed}
 * (any thread).
 */
final class BlkQueueHandler implements QueueHandler, BlockRequest.Completer {
    private static final Logger LOG = LoggerFactory.getLogger(BlkQueueHandler.class);
    static final int T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13;
    static final int HEADER_SIZE = 16, RANGE_SIZE = 16, ID_BYTES = 20;
    static final int WRITE_ZEROES_UNMAP = 1;
    private static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private static final VarHandle IN_FLIGHT, MALFORMED, IO_ERRORS, UNSUPPORTED;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            IN_FLIGHT = l.findVarHandle(BlkQueueHandler.class, "inFlight", int.class);
            MALFORMED = l.findVarHandle(BlkQueueHandler.class, "malformed", long.class);
            IO_ERRORS = l.findVarHandle(BlkQueueHandler.class, "ioErrors", long.class);
            UNSUPPORTED = l.findVarHandle(BlkQueueHandler.class, "unsupported", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final BlkDevice device;
    private final BlockStore store;
    private final BlockStore.Queue io;
    private final BlockRequest[] free;
    private int freeCount;
    private final BlockRequest[] batch;
    private int batchCount;
    private final MpscAtomicArrayQueue<BlockRequest> completions;
    /**
     * Requests the store completed on the poller itself (the RAM and null stores, page-cache hits
     * of the file store): kept here, in completion order, without the MPSC queue's CAS. Poller only.
     */
    private final BlockRequest[] inline;
    private int inlineCount;
    private final MemorySegment header = MemorySegment.ofArray(new byte[HEADER_SIZE]);
    private final MemorySegment ranges = MemorySegment.ofArray(new byte[RANGE_SIZE * BlkDevice.MAX_DISCARD_SEG]);
    private final MemorySegment id;
    private final ChainCursor cursor = new ChainCursor();
    private volatile VirtQueue queue;
    private volatile Thread poller;
    private int inFlight;
    /** Requests refused for their framing (no status byte, short header); counted, logged once. */
    long malformed;
    long ioErrors;
    long unsupported;
    private boolean malformedLogged;

    BlkQueueHandler(BlkDevice device, int queueSize, int index) {
        this.device = device;
        this.store = device.store();
        this.io = store.openQueue(index);
        this.free = new BlockRequest[queueSize];
        this.batch = new BlockRequest[queueSize];
        this.completions = new MpscAtomicArrayQueue<>(queueSize);
        this.inline = new BlockRequest[queueSize];
        for (int i = 0; i < queueSize; i++) {
            free[i] = new BlockRequest(i, 4, BlkDevice.MAX_DISCARD_SEG, this);
        }
        freeCount = queueSize;
        byte[] idBytes = Arrays.copyOf(store.id().getBytes(StandardCharsets.US_ASCII), ID_BYTES);
        this.id = MemorySegment.ofArray(idBytes);
    }

    /** The store queue's completion fd, watched by the poller while this queue runs. */
    @Override
    public int wakeupFd() {
        return io.completionFd();
    }

    @Override
    public boolean sleepWhenIdle() {
        return io.sleepWhenIdle();
    }

    @Override
    public void started(VirtQueue q) {
        queue = q;
        poller = Thread.currentThread();
    }

    /** Any thread: the store finished {@code r}. */
    @Override
    public void completed(BlockRequest r) {
        if (Thread.currentThread() == poller) {
            inline[inlineCount++] = r; // cannot overflow: at most queue-size requests exist
            return;
        }
        while (!completions.offer(r)) {
            Thread.onSpinWait(); // cannot stay full: at most queue-size requests exist
        }
        VirtQueue q = queue;
        if (q != null) {
            q.wakePoller(); // another thread's completion: the poller may be asleep
        }
    }

    @Override
    public int process(VirtQueue q, int budget) {
        int progress = io.reap(budget);
        int done = reap(q);
        while (done < budget && freeCount > 0) {
            DescriptorChain c = q.next();
            if (c == null) {
                break;
            }
            dispatch(q, c);
            done++;
        }
        if (batchCount > 0) {
            try {
                io.submit(batch, batchCount);
            } finally { // a store that throws breaks its contract; never hand it the same requests twice
                Arrays.fill(batch, 0, batchCount, null);
                batchCount = 0;
            }
            progress += io.reap(budget); // what completed during the submission
        }
        done += reap(q);
        q.publish();
        return done + progress;
    }

    /** Scraping thread: the poller's counters, read opaque. */
    @Override
    public void metrics(MetricSink sink) {
        sink.gauge("jvhost_queue_in_flight", "Requests taken from the queue and not yet completed (with the store).",
                (int) IN_FLIGHT.getOpaque(this));
        sink.drops("malformed_request", (long) MALFORMED.getOpaque(this));
        sink.errors("io_error", (long) IO_ERRORS.getOpaque(this)); // status IOERR: store failures and refused ranges
        sink.errors("unsupported_request", (long) UNSUPPORTED.getOpaque(this));
    }

    /** Completes what the store has finished; the rest is waited for in {@link #drain}, without blocking the poller. */
    @Override
    public void stopped(VirtQueue q) {
        io.reap(Integer.MAX_VALUE);
        reap(q);
    }

    /**
     * Reaps and publishes the completions that came in; the queue stops (and GET_VRING_BASE is
     * answered) when none is left in the store, so no I/O touches guest memory after that.
     */
    @Override
    public int drain(VirtQueue q) {
        io.reap(Integer.MAX_VALUE);
        reap(q);
        q.publish();
        return inFlight;
    }

    private int reap(VirtQueue q) {
        int n = inlineCount;
        for (int i = 0; i < n; i++) {
            use(q, inline[i]);
            inline[i] = null;
        }
        inlineCount = 0;
        for (BlockRequest r; (r = completions.poll()) != null; n++) {
            use(q, r);
        }
        return n;
    }

    /** Writes {@code r}'s status, marks what it wrote dirty when migrating, uses its chain and frees it. */
    private void use(VirtQueue q, BlockRequest r) {
        r.statusMemory.set(ValueLayout.JAVA_BYTE, r.statusOffset, (byte) r.completedStatus);
        if (r.log != null) { // migrating: the status byte and data read into the guest are dirty
            r.log.mark(r.statusGpa, 1);
            if (r.type == BlockRequest.Type.READ && r.completedStatus == STATUS_OK) {
                for (int i = 0; i < r.segmentCount; i++) {
                    r.log.mark(r.segmentGpas[i], r.segmentLengths[i]);
                }
            }
        }
        if (r.completedStatus == STATUS_IOERR) {
            ioErrors++;
        }
        q.complete(r.head, r.completedStatus == STATUS_OK ? r.usedLength : 1);
        Arrays.fill(r.segmentMemory, 0, r.segmentCount, null);
        r.statusMemory = null;
        free[freeCount++] = r;
        inFlight--;
    }

    private void dispatch(VirtQueue q, DescriptorChain c) {
        // The status byte is the last writable byte, however the driver split the buffers.
        if (!cursor.writable(c, c.writableLength() - 1).next(1)) {
            malformed(q, c, "no writable status byte");
            return;
        }
        BlockRequest r = free[--freeCount];
        inFlight++;
        r.head = c.head();
        r.statusMemory = cursor.memory(); // the region's mapping, no slice: nothing allocated per request
        r.statusOffset = cursor.offset();
        r.statusGpa = cursor.gpa();
        r.log = c.dirtyLog();
        r.segmentCount = 0;
        r.rangeCount = 0;
        r.unmap = false;
        r.durable = false;
        r.usedLength = 1;
        if (c.readableLength() < HEADER_SIZE) {
            malformedLogOnce(q, "request header shorter than 16 bytes");
            malformed++;
            finish(r, STATUS_IOERR);
            return;
        }
        int type;
        long sector;
        ChainCursor h = cursor.readable(c, 0);
        if (h.next(HEADER_SIZE) && h.length() == HEADER_SIZE) { // in one buffer, as drivers put it: read in place, once
            type = h.memory().get(LE_INT, h.offset());
            sector = h.memory().get(LE_LONG, h.offset() + 8);
        } else {
            c.read(0, header, 0, HEADER_SIZE);
            type = header.get(LE_INT, 0);
            sector = header.get(LE_LONG, 8);
        }
        switch (type) {
            case T_IN -> readWrite(c, r, BlockRequest.Type.READ, sector, c.writableLength() - 1);
            case T_OUT -> {
                if (store.readOnly()) {
                    finish(r, STATUS_IOERR);
                } else {
                    r.durable = !device.writeback();
                    readWrite(c, r, BlockRequest.Type.WRITE, sector, c.readableLength() - HEADER_SIZE);
                }
            }
            case T_FLUSH -> {
                if (!store.canFlush()) {
                    finish(r, STATUS_OK); // nothing volatile to flush
                } else {
                    r.type = BlockRequest.Type.FLUSH;
                    batch[batchCount++] = r;
                }
            }
            case T_GET_ID -> {
                long n = Math.min(ID_BYTES, c.writableLength() - 1);
                c.write(id, 0, 0, n);
                r.usedLength = n + 1;
                finish(r, STATUS_OK);
            }
            case T_DISCARD -> ranges(c, r, BlockRequest.Type.DISCARD, BLK_DISCARD);
            case T_WRITE_ZEROES -> ranges(c, r, BlockRequest.Type.WRITE_ZEROES, BLK_WRITE_ZEROES);
            default -> {
                unsupported++;
                finish(r, STATUS_UNSUPP);
            }
        }
    }

    private void readWrite(DescriptorChain c, BlockRequest r, BlockRequest.Type type, long sector, long length) {
        long capacity = store.size() / BlkDevice.SECTOR;
        if (length % BlkDevice.SECTOR != 0 || sector < 0 || sector > capacity
                || length / BlkDevice.SECTOR > capacity - sector) {
            finish(r, STATUS_IOERR);
            return;
        }
        r.type = type;
        r.offset = sector * BlkDevice.SECTOR;
        r.length = length;
        boolean writable = type == BlockRequest.Type.READ;
        // A read fills the writable buffers (up to the status byte), a write takes what follows the header.
        ChainCursor b = writable ? cursor.writable(c, 0) : cursor.readable(c, HEADER_SIZE);
        for (long left = length; b.next(left); left -= b.length()) {
            r.addSegment(b.memory(), b.offset(), b.length(), b.gpa());
        }
        if (writable) {
            r.usedLength = length + 1;
        }
        if (length == 0) {
            finish(r, STATUS_OK);
        } else {
            batch[batchCount++] = r;
        }
    }

    private void ranges(DescriptorChain c, BlockRequest r, BlockRequest.Type type, int feature) {
        long bytes = c.readableLength() - HEADER_SIZE;
        if (!device.acked(feature) || store.readOnly()) {
            unsupported++;
            finish(r, STATUS_UNSUPP);
            return;
        }
        if (bytes <= 0 || bytes % RANGE_SIZE != 0 || bytes / RANGE_SIZE > BlkDevice.MAX_DISCARD_SEG) {
            finish(r, STATUS_IOERR);
            return;
        }
        c.read(HEADER_SIZE, ranges, 0, bytes);
        long capacity = store.size() / BlkDevice.SECTOR;
        long alignment = store.blockSize() / BlkDevice.SECTOR;
        int n = (int) (bytes / RANGE_SIZE);
        for (int i = 0; i < n; i++) {
            long sector = ranges.get(LE_LONG, (long) i * RANGE_SIZE);
            long count = Integer.toUnsignedLong(ranges.get(LE_INT, (long) i * RANGE_SIZE + 8));
            int flags = ranges.get(LE_INT, (long) i * RANGE_SIZE + 12);
            int allowed = type == BlockRequest.Type.WRITE_ZEROES ? WRITE_ZEROES_UNMAP : 0;
            if ((flags & ~allowed) != 0) {
                finish(r, STATUS_UNSUPP);
                return;
            }
            if (count > BlkDevice.MAX_RANGE_SECTORS || sector < 0 || sector > capacity || count > capacity - sector
                    || (type == BlockRequest.Type.DISCARD && (sector % alignment != 0 || count % alignment != 0))) {
                finish(r, STATUS_IOERR);
                return;
            }
            r.unmap |= (flags & WRITE_ZEROES_UNMAP) != 0;
            r.rangeOffsets[i] = sector * BlkDevice.SECTOR;
            r.rangeLengths[i] = count * BlkDevice.SECTOR;
        }
        r.rangeCount = n;
        r.type = type;
        batch[batchCount++] = r;
    }

    private void finish(BlockRequest r, int status) {
        r.complete(status);
    }

    private void malformed(VirtQueue q, DescriptorChain c, String why) {
        malformed++;
        malformedLogOnce(q, why);
        q.complete(c, 0);
    }

    private void malformedLogOnce(VirtQueue q, String why) {
        if (!malformedLogged) {
            malformedLogged = true;
            LOG.warn("queue {}: malformed request ({}); further ones only counted", q.index(), why);
        }
    }
}
