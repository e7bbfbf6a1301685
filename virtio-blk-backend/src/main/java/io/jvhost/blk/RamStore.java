package io.jvhost.blk;

import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.FileCalls;
import io.jvhost.core.sys.Mappings;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A disk in memory (a memfd: pages are allocated as they are written), for tests and benchmarks.
 * Copies are memory speed, so requests complete inline on the poller thread: nothing here blocks.
 * Contents vanish with the process, or pass to its successor in a live upgrade ({@link #duplicateFd()}).
 */
public final class RamStore extends FixedSizeStore {
    private final Arena arena = Arena.ofShared();
    private final Fd memory;
    private final MemorySegment disk;

    public RamStore(long sizeBytes) {
        this(sizeBytes, false);
    }

    public RamStore(long sizeBytes, boolean readOnly) {
        this(newMemory(sizeBytes), sizeBytes, readOnly);
    }

    /** A RAM disk on {@code memory} (a predecessor's, in a live upgrade), which it takes; its contents stay. */
    public RamStore(Fd memory, long sizeBytes, boolean readOnly) {
        super("RAM disk", sizeBytes, readOnly);
        this.memory = memory;
        try {
            if (FileCalls.fileSize(memory.get()) < sizeBytes) {
                throw new IllegalArgumentException("the RAM disk handed over holds " + FileCalls.fileSize(memory.get())
                        + " bytes, not " + sizeBytes);
            }
            this.disk = Mappings.map(memory.get(), 0, sizeBytes, arena);
        } catch (NativeException e) {
            arena.close();
            memory.close();
            throw new IllegalStateException("cannot map a RAM disk of " + sizeBytes + " bytes: " + e.getMessage(), e);
        }
    }

    private static Fd newMemory(long sizeBytes) {
        try {
            return Mappings.memfd("jvhost-ram", sizeBytes);
        } catch (NativeException e) {
            throw new IllegalStateException("cannot make a RAM disk of " + sizeBytes + " bytes: " + e.getMessage(), e);
        }
    }

    /** A duplicate of the memory's fd, for a successor process (live upgrade); the caller closes it. */
    public Fd duplicateFd() throws NativeException {
        return memory.dup();
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
        memory.close();
    }
}
