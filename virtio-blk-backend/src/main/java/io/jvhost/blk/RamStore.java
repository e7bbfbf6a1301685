package io.jvhost.blk;

import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.FileCalls;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.Mappings;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * A disk in memory (a memfd), for tests and benchmarks. Memory is taken as the disk is written, as
 * Linux's brd does: a 4 KiB page never written (or discarded since) reads as zeroes without being
 * touched, and DISCARD (and WRITE_ZEROES with its unmap flag) give whole pages back to the kernel. Copies are memory
 * speed, so requests complete inline on the poller thread: nothing here blocks. Contents vanish with
 * the process, or pass to its successor in a live upgrade ({@link #duplicateFd()}), which finds the
 * written pages again in the memfd's data extents.
 */
public final class RamStore extends FixedSizeStore {
    private static final int PAGE_SHIFT = 12;
    private static final long PAGE = 1L << PAGE_SHIFT;
    /** The source of a read of pages never written: one page, so it stays in the L1 cache. */
    private static final MemorySegment ZEROES = MemorySegment.ofArray(new byte[(int) PAGE]);
    private static final VarHandle BITS = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle LEAVES = MethodHandles.arrayElementVarHandle(long[][].class);
    /** Pages per leaf of the bitmap (2^15): a leaf (4 KiB of bits) covers 128 MiB of disk. */
    private static final int LEAF_SHIFT = 15;

    private final Arena arena = Arena.ofShared();
    private final Fd memory;
    private final MemorySegment disk;
    /**
     * One bit per 4 KiB page: set once the page holds data. A read of a clear page fills zeroes
     * rather than read the memfd, whose hole a read through the mapping would allocate. In leaves
     * made on the first write to their 128 MiB, so that a large disk written in a few places costs
     * little heap (a flat bitmap of a 64 TiB disk: 2 GiB). Pollers of several queues share it: leaves
     * published with a CAS, bits set with an atomic or, both read with acquire.
     */
    private final long[][] written;

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
            this.written = new long[(int) ((((sizeBytes + PAGE - 1) >>> PAGE_SHIFT) + (1L << LEAF_SHIFT) - 1) >>> LEAF_SHIFT)][];
            markData(memory.get(), sizeBytes);
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

    /**
     * Marks the pages a predecessor wrote (the memfd's data extents; tmpfs reports them by page).
     * Where the file cannot tell, every page counts as written: reads then copy, and nothing is lost.
     */
    private void markData(int fd, long sizeBytes) {
        long at = 0;
        while (at < sizeBytes) {
            long data = FileCalls.lseek(fd, at, FileCalls.SEEK_DATA);
            if (data == -LibC.ENXIO || data >= sizeBytes) {
                return; // no data past at
            }
            if (data < 0) {
                markWritten(at, sizeBytes - at);
                return;
            }
            long hole = FileCalls.lseek(fd, data, FileCalls.SEEK_HOLE);
            long end = hole < 0 ? sizeBytes : Math.min(hole, sizeBytes);
            markWritten(data, end - data);
            at = end;
        }
    }

    /**
     * The disk's bytes, for tests to inspect or write directly; from this call on every page counts
     * as written, so what a test puts there is what requests read.
     */
    public MemorySegment contents() {
        markWritten(0, size());
        return disk;
    }

    /** How many bytes of the disk hold data (whole pages written and not discarded since). */
    public long bytesWritten() {
        long pages = 0;
        for (int l = 0; l < written.length; l++) {
            long[] leaf = (long[]) LEAVES.getAcquire(written, l);
            for (int i = 0; leaf != null && i < leaf.length; i++) {
                pages += Long.bitCount((long) BITS.getAcquire(leaf, i));
            }
        }
        return pages << PAGE_SHIFT;
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
                        read(at, r.segmentMemory(s), r.segmentOffset(s), n);
                        at += n;
                    }
                }
                case WRITE -> {
                    for (int s = 0; s < r.segmentCount(); s++) {
                        long n = r.segmentLength(s);
                        MemorySegment.copy(r.segmentMemory(s), r.segmentOffset(s), disk, at, n);
                        markWritten(at, n);
                        at += n;
                    }
                }
                case DISCARD, WRITE_ZEROES -> {
                    boolean deallocate = r.type() == BlockRequest.Type.DISCARD || r.unmap();
                    for (int g = 0; g < r.rangeCount(); g++) {
                        if (deallocate) {
                            zero(r.rangeOffset(g), r.rangeLength(g));
                        } else { // the guest wants the range kept allocated, as QEMU keeps it without MAY_UNMAP
                            zeroInPlace(r.rangeOffset(g), r.rangeOffset(g) + r.rangeLength(g));
                        }
                    }
                }
                case FLUSH -> { }
            }
            r.complete(BlockRequest.STATUS_OK);
        }
    }

    /** Copies {@code n} bytes at {@code at} into {@code to}: runs of written pages copied, the others zeroes. */
    private void read(long at, MemorySegment to, long toOffset, long n) {
        long end = at + n;
        while (at < end) {
            boolean data = isWritten(at >>> PAGE_SHIFT);
            long stop = Math.min(end, (at | (PAGE - 1)) + 1);
            while (stop < end && isWritten(stop >>> PAGE_SHIFT) == data) {
                stop = Math.min(end, stop + PAGE);
            }
            long len = stop - at;
            if (data) {
                MemorySegment.copy(disk, at, to, toOffset, len);
            } else {
                for (long done = 0; done < len; done += PAGE) {
                    MemorySegment.copy(ZEROES, 0, to, toOffset + done, Math.min(PAGE, len - done));
                }
            }
            toOffset += len;
            at = stop;
        }
    }

    /**
     * Zeroes a range: the whole pages in it go back to the kernel (a hole punched in the memfd) and
     * read as zeroes again; the partial pages at its ends are zeroed in place where they hold data.
     */
    private void zero(long at, long n) {
        long end = at + n;
        long first = (at + PAGE - 1) & -PAGE, last = end & -PAGE; // the whole pages: [first, last)
        if (first >= last) {
            zeroInPage(at, end);
            return;
        }
        zeroInPage(at, first);
        zeroInPage(last, end);
        clear(first >>> PAGE_SHIFT, last >>> PAGE_SHIFT);
        int r = FileCalls.fallocate(memory.get(), FileCalls.FALLOC_FL_PUNCH_HOLE | FileCalls.FALLOC_FL_KEEP_SIZE,
                first, last - first);
        if (r < 0) { // not expected on a memfd; the bitmap already reads them as zeroes, but a successor finds pages by their data
            disk.asSlice(first, last - first).fill((byte) 0);
        }
    }

    /** Clears the bits of pages [from, to), a word at a time, skipping the leaves never made (a guest's mkfs discards it all). */
    private void clear(long from, long to) {
        long p = from;
        while (p < to) {
            int l = (int) (p >>> LEAF_SHIFT);
            long leafEnd = Math.min(to, (long) (l + 1) << LEAF_SHIFT);
            long[] leaf = (long[]) LEAVES.getAcquire(written, l);
            while (leaf != null && p < leafEnd) {
                long wordEnd = Math.min(leafEnd, (p | 63) + 1), len = wordEnd - p;
                long bits = len == 64 ? -1L : ((1L << len) - 1) << p;
                BITS.getAndBitwiseAnd(leaf, bitWord(p), ~bits);
                p = wordEnd;
            }
            p = leafEnd;
        }
    }

    /** Zeroes the written pages of [from, to) in place (they stay allocated); the others read as zeroes already. */
    private void zeroInPlace(long from, long to) {
        long at = from;
        while (at < to) {
            long page = at >>> PAGE_SHIFT;
            long next;
            if (LEAVES.getAcquire(written, (int) (page >>> LEAF_SHIFT)) == null) {
                next = Math.min(to, ((page >>> LEAF_SHIFT) + 1) << LEAF_SHIFT + PAGE_SHIFT);
            } else {
                next = Math.min(to, (page + 1) << PAGE_SHIFT);
                zeroInPage(at, next);
            }
            at = next;
        }
    }

    private void zeroInPage(long from, long to) {
        if (from < to && isWritten(from >>> PAGE_SHIFT)) {
            disk.asSlice(from, to - from).fill((byte) 0);
        }
    }

    private boolean isWritten(long page) {
        long[] leaf = (long[]) LEAVES.getAcquire(written, (int) (page >>> LEAF_SHIFT));
        return leaf != null && ((long) BITS.getAcquire(leaf, bitWord(page)) & (1L << page)) != 0;
    }

    private static int bitWord(long page) {
        return (int) (page >>> 6) & ((1 << LEAF_SHIFT - 6) - 1);
    }

    /** The leaf of {@code page}, made (once per 128 MiB of disk; the race's loser takes the winner's) when missing. */
    private long[] leafOf(long page) {
        int l = (int) (page >>> LEAF_SHIFT);
        long[] leaf = (long[]) LEAVES.getAcquire(written, l);
        if (leaf == null) {
            long[] made = new long[1 << LEAF_SHIFT - 6];
            leaf = (long[]) LEAVES.compareAndExchange(written, l, (long[]) null, made);
            leaf = leaf == null ? made : leaf;
        }
        return leaf;
    }

    private void markWritten(long at, long n) {
        if (n <= 0) {
            return;
        }
        for (long p = at >>> PAGE_SHIFT, last = (at + n - 1) >>> PAGE_SHIFT; p <= last; p++) {
            if (!isWritten(p)) {
                BITS.getAndBitwiseOr(leafOf(p), bitWord(p), 1L << p);
            }
        }
    }

    @Override
    public void close() {
        arena.close();
        memory.close();
    }
}
