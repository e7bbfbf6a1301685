package io.jvhost.blk;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A disk in native memory, for tests and benchmarks. Copies are memory speed, so requests complete
 * inline on the poller thread: nothing here blocks. Contents vanish with the process.
 */
public final class RamStore extends FixedSizeStore {
    private final Arena arena = Arena.ofShared();
    private final MemorySegment disk;

    public RamStore(long sizeBytes) {
        this(sizeBytes, false);
    }

    public RamStore(long sizeBytes, boolean readOnly) {
        super("RAM disk", sizeBytes, readOnly);
        this.disk = arena.allocate(sizeBytes, 4096);
    }

    /** The disk's bytes, for tests to inspect. */
    public MemorySegment contents() {
        return disk;
    }

    @Override
    public boolean canFlush() {
        return false; // nothing volatile: every write is as durable as the RAM itself
    }

    @Override
    public String id() {
        return "jvhost-ram";
    }

    @Override
    public void submit(BlockRequest[] requests, int count) {
        for (int i = 0; i < count; i++) {
            BlockRequest r = requests[i];
            long at = r.offset();
            switch (r.type()) {
                case READ -> {
                    for (int s = 0; s < r.segmentCount(); s++) {
                        long n = r.segmentLength(s);
                        MemorySegment.copy(disk, at, r.segmentMemory(s), r.segmentOffset(s), n);
                        at += n;
                    }
                }
                case WRITE -> {
                    for (int s = 0; s < r.segmentCount(); s++) {
                        long n = r.segmentLength(s);
                        MemorySegment.copy(r.segmentMemory(s), r.segmentOffset(s), disk, at, n);
                        at += n;
                    }
                }
                case DISCARD, WRITE_ZEROES -> {
                    for (int g = 0; g < r.rangeCount(); g++) {
                        disk.asSlice(r.rangeOffset(g), r.rangeLength(g)).fill((byte) 0);
                    }
                }
                case FLUSH -> { }
            }
            r.complete(BlockRequest.STATUS_OK);
        }
    }

    @Override
    public void close() {
        arena.close();
    }
}
