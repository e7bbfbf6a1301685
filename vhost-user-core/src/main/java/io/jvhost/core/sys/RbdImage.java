package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * An open RBD image ({@code rbd_image_t}) and librbd's asynchronous I/O on it, for a block store.
 *
 * <p>The data path works on native memory the caller owns and passes as (segment, offset): iovec
 * arrays ({@link #IOVEC_SIZE} bytes each: base address, length) whose bases point straight into
 * guest memory, cells that receive a new completion, and the array {@link #pollIoEvents} fills.
 * Completions are {@code long} handles; each carries a caller-chosen {@code long} argument
 * ({@link #completionArg}). The I/O calls return 0 or {@code -errno}, allocate nothing on the Java
 * heap, never block on the cluster, and may be called from any thread (librbd is thread-safe).
 *
 * <p>Completion without callbacks: {@link #notifyCompletions} hands librbd an eventfd; librbd
 * writes to it as requests complete and queues them, and {@link #pollIoEvents} takes them (as QEMU's
 * and fio's polling engines do). A completion must be created with {@link #createCompletion} right
 * before one I/O call, and released with {@link #releaseCompletion} once its result was read.
 *
 * <p>Control-path methods ({@link #size}, {@link #notifyCompletions}, {@link #close}) throw
 * {@link NativeException}s and may block on the cluster.
 */
public final class RbdImage implements AutoCloseable {
    /** {@code struct iovec}: {@code void *iov_base; size_t iov_len}. */
    public static final long IOVEC_SIZE = 16, IOV_BASE_OFFSET = 0, IOV_LEN_OFFSET = 8;
    /** Bytes of one completion handle, in a cell or in the {@link #pollIoEvents} array. */
    public static final long COMPLETION_SIZE = 8;
    /** librbd's {@code EVENT_TYPE_EVENTFD}. */
    private static final int EVENT_TYPE_EVENTFD = 2;

    private final long ioctx;
    private final long image;
    private final String name;
    private final boolean readOnly;
    private boolean closed;

    RbdImage(long ioctx, long image, String name, boolean readOnly) {
        this.ioctx = ioctx;
        this.image = image;
        this.name = name;
        this.readOnly = readOnly;
    }

    /** {@code pool/image}. */
    public String name() {
        return name;
    }

    public boolean readOnly() {
        return readOnly;
    }

    /** The image's size in bytes, as of now (librbd refreshes its header when another client resized it). */
    public long size() throws NativeException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_LONG);
            int r = (int) LibRbd.RBD_GET_SIZE.invokeExact(image, out);
            if (r < 0) {
                throw new NativeException("rbd_get_size of " + name, -r);
            }
            return out.get(JAVA_LONG, 0);
        } catch (NativeException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /**
     * From now on librbd signals {@code eventFd} (an eventfd the caller owns and keeps open until
     * {@link #close}) whenever an I/O started after this call completes, and queues it for
     * {@link #pollIoEvents}.
     */
    public void notifyCompletions(Fd eventFd) throws NativeException {
        try {
            int r = (int) LibRbd.RBD_SET_IMAGE_NOTIFICATION.invokeExact(image, eventFd.get(), EVENT_TYPE_EVENTFD);
            if (r < 0) {
                throw new NativeException("rbd_set_image_notification on " + name, -r);
            }
        } catch (NativeException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /**
     * Creates a completion carrying {@code arg}, with no callback, and stores its handle in the 8
     * bytes at {@code cell[cellOffset]}; 0 or {@code -errno}. The handle is {@link #completion(MemorySegment, long)}.
     */
    public static int createCompletion(long arg, MemorySegment cell, long cellOffset) {
        try {
            return (int) LibRbd.RBD_AIO_CREATE_COMPLETION.invokeExact(arg, 0L, cell.address() + cellOffset);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** Reads a completion handle from a cell or from the {@link #pollIoEvents} array. */
    public static long completion(MemorySegment cells, long offset) {
        return cells.get(JAVA_LONG, offset);
    }

    /** Reads {@code [diskOffset, + sum of the iovecs' lengths)} into the buffers of {@code iovCount} iovecs at {@code iov[iovOffset]}. */
    public int aioReadv(MemorySegment iov, long iovOffset, int iovCount, long diskOffset, long completion) {
        try {
            return (int) LibRbd.RBD_AIO_READV.invokeExact(image, iov.address() + iovOffset, iovCount, diskOffset, completion);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** Writes the buffers of {@code iovCount} iovecs at {@code iov[iovOffset]} at {@code diskOffset}. */
    public int aioWritev(MemorySegment iov, long iovOffset, int iovCount, long diskOffset, long completion) {
        try {
            return (int) LibRbd.RBD_AIO_WRITEV.invokeExact(image, iov.address() + iovOffset, iovCount, diskOffset, completion);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** Completes once every write that completed before this call is durable (librbd's cache flushed). */
    public int aioFlush(long completion) {
        try {
            return (int) LibRbd.RBD_AIO_FLUSH.invokeExact(image, completion);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** Deallocates {@code [offset, offset + length)}; reads of it return zeros afterwards. */
    public int aioDiscard(long offset, long length, long completion) {
        try {
            return (int) LibRbd.RBD_AIO_DISCARD.invokeExact(image, offset, length, completion);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** Zeroes {@code [offset, offset + length)} (librbd may deallocate it: zero flags 0). */
    public int aioWriteZeroes(long offset, long length, long completion) {
        try {
            return (int) LibRbd.RBD_AIO_WRITE_ZEROES.invokeExact(image, offset, length, completion, 0, 0);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /**
     * Takes up to {@code max} completed I/Os into {@code comps[compsOffset ...]} (8 bytes each, read
     * with {@link #completion}); their count, or {@code -errno}. Never blocks.
     */
    public int pollIoEvents(MemorySegment comps, long compsOffset, int max) {
        try {
            return (int) LibRbd.RBD_POLL_IO_EVENTS.invokeExact(image, comps.address() + compsOffset, max);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** A completed I/O's result: bytes read, 0, or {@code -errno}. */
    public static long returnValue(long completion) {
        try {
            return (long) LibRbd.RBD_AIO_GET_RETURN_VALUE.invokeExact(completion);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** The {@code arg} the completion was created with. */
    public static long completionArg(long completion) {
        try {
            return (long) LibRbd.RBD_AIO_GET_ARG.invokeExact(completion);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** Gives the completion back to librbd: once its I/O completed, or when starting the I/O failed. */
    public static void releaseCompletion(long completion) {
        try {
            LibRbd.RBD_AIO_RELEASE.invokeExact(completion);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /**
     * rbd_close (which waits for I/O in flight and flushes librbd's cache), then the pool's I/O
     * context. Throws if the flush failed; closing again does nothing.
     */
    @Override
    public synchronized void close() throws NativeException {
        if (closed) {
            return;
        }
        closed = true;
        int r;
        try {
            r = (int) LibRbd.RBD_CLOSE.invokeExact(image);
            LibRbd.RADOS_IOCTX_DESTROY.invokeExact(ioctx);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
        if (r < 0) {
            throw new NativeException("rbd_close of " + name, -r);
        }
    }

    @Override
    public String toString() {
        return "rbd " + name;
    }
}
