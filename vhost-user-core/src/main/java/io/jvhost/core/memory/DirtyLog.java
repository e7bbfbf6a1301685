package io.jvhost.core.memory;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * The dirty-page bitmap of a live migration (LOG_SHMFD, SET_LOG_BASE): one bit per 4 KiB page of
 * guest-physical memory, set atomically for every byte the backend writes into the guest while
 * VHOST_F_LOG_ALL is on, so the frontend copies those pages again. Any thread.
 */
public final class DirtyLog {
    public static final int PAGE_SHIFT = 12;
    private static final VarHandle U64_VH = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle OUT_OF_RANGE_VH;

    static {
        try {
            OUT_OF_RANGE_VH = MethodHandles.lookup().findVarHandle(DirtyLog.class, "outOfRange", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final MemorySegment bitmap;
    private final long words;
    /**
     * Pages past the end of the log: counted, never written (a short log is the frontend's bug).
     * Every poller of the session marks this log, so only atomic adds change it.
     */
    private volatile long outOfRange;

    public DirtyLog(MemorySegment bitmap) {
        this.bitmap = bitmap;
        this.words = bitmap.byteSize() / 8;
    }

    /** Marks every page that {@code [gpa, gpa + length)} touches. */
    public void mark(long gpa, long length) {
        if (length <= 0) {
            return;
        }
        long first = gpa >>> PAGE_SHIFT, last = (gpa + length - 1) >>> PAGE_SHIFT;
        for (long page = first; page <= last; page++) {
            long word = page >>> 6;
            if (word >= words) {
                long ignored = (long) OUT_OF_RANGE_VH.getAndAdd(this, last - page + 1); // this page and every later one
                return;
            }
            long bit = 1L << (page & 63);
            U64_VH.getAndBitwiseOr(bitmap, word * 8, bit);
        }
    }

    /** Whether the page holding {@code gpa} is marked (for tests). */
    public boolean isDirty(long gpa) {
        long page = gpa >>> PAGE_SHIFT, word = page >>> 6;
        return word < words && ((long) U64_VH.getVolatile(bitmap, word * 8) & (1L << (page & 63))) != 0;
    }

    public long outOfRange() {
        return outOfRange;
    }
}
