package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.lang.ref.Reference;

import io.jvhost.core.sys.LibC.Scratch;

import static io.jvhost.core.sys.LibC.EFAULT;
import static io.jvhost.core.sys.LibC.LINKER;
import static io.jvhost.core.sys.LibC.LOOKUP;
import static io.jvhost.core.sys.LibC.SCRATCH;
import static io.jvhost.core.sys.LibC.bind;
import static io.jvhost.core.sys.LibC.bindFast;
import static io.jvhost.core.sys.LibC.ret;
import static io.jvhost.core.sys.LibC.rethrow;
import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The file and block-device calls (open, positional I/O, sync, fallocate, ioctl, fstat), with
 * {@link LibC}'s conventions: the result or {@code -errno}, allocation-free on the data path.
 */
public final class FileCalls {
    public static final int O_RDONLY = 0, O_RDWR = 2, O_DIRECT = 0x4000, O_CLOEXEC = 0x80000;
    public static final int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2, FALLOC_FL_ZERO_RANGE = 0x10;
    public static final long BLKGETSIZE64 = 0x80081272L;
    /** lseek's whence for the next data or hole at or after an offset (tmpfs and shmem have them). */
    public static final int SEEK_DATA = 3, SEEK_HOLE = 4;
    /** {@code statfs.f_type} of the file systems that keep files in memory (tmpfs, shmem; ramfs). */
    public static final long TMPFS_MAGIC = 0x01021994L, RAMFS_MAGIC = 0x858458f6L;
    /** preadv2's flag: fail with EAGAIN rather than block (EOPNOTSUPP where the file system cannot). */
    public static final int RWF_NOWAIT = 8;
    /** x86-64 {@code struct stat}: only the fields jvhost reads. */
    public static final long ST_MODE_OFFSET = 24, ST_SIZE_OFFSET = 48, ST_BLKSIZE_OFFSET = 56;

    private static final MethodHandle OPEN_MH = bind("open", JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);
    // write, pread and pwrite take the buffer as a plain address: the (segment, offset) methods pass
    // segment.address() + offset and so create no slice per call; the FAST handles skip errno capture
    // (see LibC) and the call is repeated with capture only when it failed.
    private static final MethodHandle WRITE_AT_MH = bind("write", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG);
    private static final MethodHandle PREAD_AT_MH = bind("pread", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG);
    private static final MethodHandle PWRITE_AT_MH = bind("pwrite", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG);
    private static final MethodHandle WRITE_AT_FAST_MH = bindFast("write", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG);
    private static final MethodHandle PREAD_AT_FAST_MH =
            bindFast("pread", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG);
    private static final MethodHandle PWRITE_AT_FAST_MH =
            bindFast("pwrite", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG);
    private static final MethodHandle WRITEV_MH = bind("writev", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT);
    private static final MethodHandle WRITEV_FAST_MH = bindFast("writev", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT);
    private static final MethodHandle FDATASYNC_MH = bind("fdatasync", JAVA_INT, JAVA_INT);
    private static final MethodHandle FALLOCATE_MH = bind("fallocate", JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_LONG);
    private static final MethodHandle LSEEK_MH = bind("lseek", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT);
    private static final MethodHandle IOCTL_MH = LINKER.downcallHandle(LOOKUP.find("ioctl").orElseThrow(),
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS),
            Linker.Option.captureCallState("errno"), Linker.Option.firstVariadicArg(2));
    private static final MethodHandle FTRUNCATE_MH = bind("ftruncate", JAVA_INT, JAVA_INT, JAVA_LONG);
    private static final MethodHandle FSTAT_MH = bind("fstat", JAVA_INT, JAVA_INT, ADDRESS);
    private static final MethodHandle FSTATFS_MH = bind("fstatfs", JAVA_INT, JAVA_INT, ADDRESS);
    private static final MethodHandle PREADV2_MH = bind("preadv2", JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG, JAVA_INT);
    /** x86-64 {@code struct statfs}: 120 bytes, {@code f_type} first. */
    private static final long STATFS_SIZE = 120;

    private FileCalls() {}

    public static int open(String path, int flags) {
        Scratch s = SCRATCH.get();
        try (Arena a = Arena.ofConfined()) {
            return ret(s, (int) OPEN_MH.invokeExact(s.capture, a.allocateFrom(path), flags, 0));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * The address of {@code [offset, offset + length)} of the native segment {@code buf}, bounds-checked,
     * or 0 when {@code buf}'s memory is already unmapped. Unlike passing a segment to a downcall, the
     * address does not keep {@code buf}'s arena open during the call: the caller must.
     */
    static long addressOf(MemorySegment buf, long offset, long length) {
        java.util.Objects.checkFromIndexSize(offset, length, buf.byteSize());
        if (!buf.isNative()) {
            throw new IllegalArgumentException("not native memory: " + buf);
        }
        return buf.scope().isAlive() ? buf.address() + offset : 0;
    }

    /**
     * Writes {@code length} bytes at {@code offset} of the native {@code buf}: bytes or {@code -errno}.
     * Allocation-free; the caller keeps {@code buf} mapped until this returns ({@code -EFAULT} if it
     * is unmapped already).
     */
    public static long write(int fd, MemorySegment buf, long offset, long length) {
        long address = addressOf(buf, offset, length);
        if (address == 0) {
            return -EFAULT;
        }
        try {
            long r = (long) WRITE_AT_FAST_MH.invokeExact(fd, address, length);
            if (r >= 0) {
                return r;
            }
            Scratch s = SCRATCH.get();
            return ret(s, (long) WRITE_AT_MH.invokeExact(s.capture, fd, address, length));
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            Reference.reachabilityFence(buf); // an automatic arena must not free it during the call
        }
    }

    /** Bytes of the {@code struct iovec} array {@link #write2} fills: two entries. */
    public static final long IOVEC_PAIR_SIZE = 32;

    /**
     * Writes two pieces as one (a TAP frame: its virtio-net header, then the frame from guest
     * memory) with {@code writev}: bytes or {@code -errno}. {@code iov} is the caller's native
     * scratch of {@link #IOVEC_PAIR_SIZE} bytes, used by one thread at a time. Allocation-free; the
     * caller keeps both buffers mapped until this returns.
     */
    public static long write2(int fd, MemorySegment iov, MemorySegment a, long aOffset, long aLength,
                              MemorySegment b, long bOffset, long bLength) {
        long first = addressOf(a, aOffset, aLength), second = addressOf(b, bOffset, bLength);
        if (first == 0 || second == 0 || iov.byteSize() < IOVEC_PAIR_SIZE) {
            return -EFAULT;
        }
        iov.set(JAVA_LONG, 0, first);
        iov.set(JAVA_LONG, 8, aLength);
        iov.set(JAVA_LONG, 16, second);
        iov.set(JAVA_LONG, 24, bLength);
        long vector = addressOf(iov, 0, IOVEC_PAIR_SIZE);
        try {
            long r = (long) WRITEV_FAST_MH.invokeExact(fd, vector, 2);
            if (r >= 0) {
                return r;
            }
            Scratch s = SCRATCH.get();
            return ret(s, (long) WRITEV_MH.invokeExact(s.capture, fd, vector, 2));
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            Reference.reachabilityFence(a);
            Reference.reachabilityFence(b);
            Reference.reachabilityFence(iov);
        }
    }

    /**
     * Writes the pieces of {@code v} as one ({@code writev}): bytes or {@code -errno}.
     * Allocation-free; the caller keeps the pieces mapped until this returns.
     */
    public static long writev(int fd, IoVector v) {
        MemorySegment iov = v.array();
        long vector = addressOf(iov, 0, iov.byteSize());
        try {
            long r = (long) WRITEV_FAST_MH.invokeExact(fd, vector, v.count());
            if (r >= 0) {
                return r;
            }
            Scratch s = SCRATCH.get();
            return ret(s, (long) WRITEV_MH.invokeExact(s.capture, fd, vector, v.count()));
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            Reference.reachabilityFence(v.segments());
            Reference.reachabilityFence(iov);
        }
    }

    /**
     * Reads into {@code [bufOffset, bufOffset + length)} of the native {@code buf} (which may be guest
     * memory) at file {@code offset}: bytes or {@code -errno}. Allocation-free; the caller keeps
     * {@code buf} mapped until this returns ({@code -EFAULT} if it is unmapped already).
     */
    public static long pread(int fd, MemorySegment buf, long bufOffset, long length, long offset) {
        long address = addressOf(buf, bufOffset, length);
        if (address == 0) {
            return -EFAULT;
        }
        try {
            long r = (long) PREAD_AT_FAST_MH.invokeExact(fd, address, length, offset);
            if (r >= 0) {
                return r;
            }
            Scratch s = SCRATCH.get();
            return ret(s, (long) PREAD_AT_MH.invokeExact(s.capture, fd, address, length, offset));
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            Reference.reachabilityFence(buf); // an automatic arena must not free it during the call
        }
    }

    /** As {@link #pread(int, MemorySegment, long, long, long)}, writing to the file. */
    public static long pwrite(int fd, MemorySegment buf, long bufOffset, long length, long offset) {
        long address = addressOf(buf, bufOffset, length);
        if (address == 0) {
            return -EFAULT;
        }
        try {
            long r = (long) PWRITE_AT_FAST_MH.invokeExact(fd, address, length, offset);
            if (r >= 0) {
                return r;
            }
            Scratch s = SCRATCH.get();
            return ret(s, (long) PWRITE_AT_MH.invokeExact(s.capture, fd, address, length, offset));
        } catch (Throwable t) {
            throw rethrow(t);
        } finally {
            Reference.reachabilityFence(buf); // an automatic arena must not free it during the call
        }
    }

    public static int fdatasync(int fd) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) FDATASYNC_MH.invokeExact(s.capture, fd));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int fallocate(int fd, int mode, long offset, long length) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) FALLOCATE_MH.invokeExact(s.capture, fd, mode, offset, length));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** lseek: the offset it finds or {@code -errno} ({@code -ENXIO}: no data, or no hole, past {@code offset}). Control path. */
    public static long lseek(int fd, long offset, int whence) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (long) LSEEK_MH.invokeExact(s.capture, fd, offset, whence));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** ioctl with a pointer argument; the result or {@code -errno}. */
    public static int ioctl(int fd, long request, MemorySegment arg) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) IOCTL_MH.invokeExact(s.capture, fd, request, arg));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** The size of a block device in bytes (BLKGETSIZE64), or {@code -errno}. */
    public static long blockDeviceSize(int fd) {
        Scratch s = SCRATCH.get();
        try {
            int r = ret(s, (int) IOCTL_MH.invokeExact(s.capture, fd, BLKGETSIZE64, s.u64));
            return r < 0 ? r : s.u64.get(JAVA_LONG, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int ftruncate(int fd, long length) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) FTRUNCATE_MH.invokeExact(s.capture, fd, length));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Whether the fd is a block device (S_IFBLK), or {@code -errno}. */
    public static int isBlockDevice(int fd) {
        Scratch s = SCRATCH.get();
        try {
            int r = ret(s, (int) FSTAT_MH.invokeExact(s.capture, fd, s.stat));
            return r < 0 ? r : ((s.stat.get(JAVA_INT, ST_MODE_OFFSET) & 0170000) == 0060000 ? 1 : 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** The file's size in bytes, or {@code -errno}. */
    public static long fileSize(int fd) {
        Scratch s = SCRATCH.get();
        try {
            int r = ret(s, (int) FSTAT_MH.invokeExact(s.capture, fd, s.stat));
            return r < 0 ? r : s.stat.get(JAVA_LONG, ST_SIZE_OFFSET);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** The file's preferred I/O block size (the huge page size on hugetlbfs), or {@code -errno}. */
    public static long blockSize(int fd) {
        Scratch s = SCRATCH.get();
        try {
            int r = ret(s, (int) FSTAT_MH.invokeExact(s.capture, fd, s.stat));
            return r < 0 ? r : s.stat.get(JAVA_LONG, ST_BLKSIZE_OFFSET);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** The {@code f_type} of the file system holding the fd's file (fstatfs), or {@code -errno}. Control path. */
    public static long fileSystemType(int fd) {
        Scratch s = SCRATCH.get();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(STATFS_SIZE, 8);
            int r = ret(s, (int) FSTATFS_MH.invokeExact(s.capture, fd, buf));
            return r < 0 ? r : buf.get(JAVA_LONG, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Reads {@code length} bytes at {@code offset} with preadv2(RWF_NOWAIT) into a buffer of its own:
     * bytes, {@code -EAGAIN} (the data is not in memory), or {@code -EOPNOTSUPP} where the file
     * system cannot read without blocking (io_uring then hands every read to a kernel worker).
     * A probe for the control path: allocates.
     */
    public static long readNoWait(int fd, long length, long offset) {
        Scratch s = SCRATCH.get();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(length, 4096);
            MemorySegment iov = a.allocate(16, 8);
            iov.set(JAVA_LONG, 0, buf.address());
            iov.set(JAVA_LONG, 8, length);
            return ret(s, (long) PREADV2_MH.invokeExact(s.capture, fd, iov, 1, offset, RWF_NOWAIT));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }
}
