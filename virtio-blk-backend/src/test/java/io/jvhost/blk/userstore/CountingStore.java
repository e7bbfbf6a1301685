package io.jvhost.blk.userstore;

import io.jvhost.blk.BlockRequest;
import io.jvhost.blk.BlockStore;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * A store written the way a user of jvhost would write one, against the public API only (this
 * package sees nothing package-private): a disk in native memory, served by a thread of its own
 * that completes every request a little later than it was submitted, so completions always come
 * from another thread while the poller may be asleep. It counts requests per type and remembers
 * what each one asked for.
 */
public final class CountingStore implements BlockStore {
    /** What the store says it can do; each capability becomes (or withholds) a feature bit. */
    public record Capabilities(boolean readOnly, boolean canFlush, boolean canDiscard, boolean canWriteZeroes,
                               int blockSize) {
        public static final Capabilities ALL = new Capabilities(false, true, true, true, 512);
        public static final Capabilities NONE = new Capabilities(false, false, false, false, 512);

        public Capabilities readOnly(boolean v) {
            return new Capabilities(v, canFlush, canDiscard, canWriteZeroes, blockSize);
        }

        public Capabilities flush(boolean v) {
            return new Capabilities(readOnly, v, canDiscard, canWriteZeroes, blockSize);
        }

        public Capabilities discard(boolean v) {
            return new Capabilities(readOnly, canFlush, v, canWriteZeroes, blockSize);
        }

        public Capabilities writeZeroes(boolean v) {
            return new Capabilities(readOnly, canFlush, canDiscard, v, blockSize);
        }

        public Capabilities blockSize(int v) {
            return new Capabilities(readOnly, canFlush, canDiscard, canWriteZeroes, v);
        }
    }

    /** One request as the store saw it, and which threads submitted and completed it. */
    public record Seen(BlockRequest.Type type, long offset, long length, boolean durable, boolean unmap,
                       List<long[]> ranges, String submittedOn, String completedOn) {}

    public static final String THREAD_NAME = "counting-store";

    private final Capabilities capabilities;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment disk;
    private final LinkedBlockingQueue<Pending> pending = new LinkedBlockingQueue<>();
    private final AtomicLongArray counts = new AtomicLongArray(BlockRequest.Type.values().length);
    private final ConcurrentLinkedQueue<Seen> seen = new ConcurrentLinkedQueue<>();
    private final Thread worker;
    private volatile boolean running = true;

    private record Pending(BlockRequest request, String submittedOn) {}

    public CountingStore(long sizeBytes, Capabilities capabilities) {
        this.capabilities = capabilities;
        this.disk = arena.allocate(sizeBytes, 4096);
        this.worker = Thread.ofPlatform().name(THREAD_NAME).daemon(true).start(this::serve);
    }

    /** The disk's bytes. */
    public MemorySegment contents() {
        return disk;
    }

    public long count(BlockRequest.Type type) {
        return counts.get(type.ordinal());
    }

    public long total() {
        long n = 0;
        for (int i = 0; i < counts.length(); i++) {
            n += counts.get(i);
        }
        return n;
    }

    /** Every request served so far, in the order the store finished them. */
    public List<Seen> seen() {
        return List.copyOf(seen);
    }

    @Override
    public long size() {
        return disk.byteSize();
    }

    @Override
    public int blockSize() {
        return capabilities.blockSize();
    }

    @Override
    public boolean readOnly() {
        return capabilities.readOnly();
    }

    @Override
    public boolean canFlush() {
        return capabilities.canFlush();
    }

    @Override
    public boolean canDiscard() {
        return capabilities.canDiscard();
    }

    @Override
    public boolean canWriteZeroes() {
        return capabilities.canWriteZeroes();
    }

    @Override
    public String id() {
        return "counting-store-serial"; // 21 characters: the device must cut it to 20
    }

    @Override
    public void submit(BlockRequest[] requests, int count) {
        String thread = Thread.currentThread().getName();
        for (int i = 0; i < count; i++) {
            pending.add(new Pending(requests[i], thread)); // the array is reused once we return
        }
    }

    private void serve() {
        while (running) {
            Pending p;
            try {
                p = pending.take();
            } catch (InterruptedException e) {
                return;
            }
            try {
                Thread.sleep(1); // let the poller go idle: the completion must wake it
            } catch (InterruptedException e) {
                return;
            }
            BlockRequest r = p.request();
            execute(r);
            counts.incrementAndGet(r.type().ordinal());
            long[][] ranges = new long[r.rangeCount()][];
            for (int g = 0; g < ranges.length; g++) {
                ranges[g] = new long[] {r.rangeOffset(g), r.rangeLength(g)};
            }
            seen.add(new Seen(r.type(), r.offset(), r.length(), r.durable(), r.unmap(), List.of(ranges), p.submittedOn(),
                    Thread.currentThread().getName()));
            r.complete(BlockRequest.STATUS_OK); // the last touch: the device reuses the request after this
        }
    }

    private void execute(BlockRequest r) {
        long at = r.offset();
        switch (r.type()) {
            case READ -> {
                for (int s = 0; s < r.segmentCount(); s++) { // (memory, offset, length): nothing allocated
                    MemorySegment.copy(disk, at, r.segmentMemory(s), r.segmentOffset(s), r.segmentLength(s));
                    at += r.segmentLength(s);
                }
            }
            case WRITE -> {
                for (int s = 0; s < r.segmentCount(); s++) {
                    MemorySegment src = r.segment(s); // the convenient slice works too (one object per call)
                    MemorySegment.copy(src, 0, disk, at, src.byteSize());
                    at += src.byteSize();
                }
            }
            case DISCARD, WRITE_ZEROES -> {
                for (int g = 0; g < r.rangeCount(); g++) {
                    disk.asSlice(r.rangeOffset(g), r.rangeLength(g)).fill((byte) 0);
                }
            }
            case FLUSH -> { }
        }
    }

    @Override
    public void close() {
        running = false;
        worker.interrupt();
        try {
            worker.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        arena.close();
    }
}
