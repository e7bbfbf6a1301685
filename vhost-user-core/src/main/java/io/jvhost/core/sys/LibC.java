package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.lang.ref.Reference;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The Linux system calls jvhost needs, bound through FFM with errno captured on every call.
 *
 * <p>Every method returns the call's result, or {@code -errno} when it failed, so the hot path never
 * allocates or throws. Control-path callers turn a negative result into a {@link NativeException}
 * with {@link #check}. Any thread may call any method: errno lands in a per-thread scratch buffer.
 * The data-path calls (read, write, pread, pwrite, eventfd, epoll_wait) capture errno only when
 * they fail, so their success path allocates nothing whatever the JIT inlines.
 */
public final class LibC {
    public static final int EPERM = 1, ENOENT = 2, EINTR = 4, EBADF = 9, EAGAIN = 11, ENOMEM = 12,
            ENXIO = 6, EFAULT = 14, EINVAL = 22, EPIPE = 32, EMSGSIZE = 90, ECONNRESET = 104, ENOBUFS = 105, ECONNREFUSED = 111;

    public static final int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_NONBLOCK = 0x800, SOCK_CLOEXEC = 0x80000;
    public static final int SOL_SOCKET = 1, SCM_RIGHTS = 1;
    public static final int MSG_CTRUNC = 0x8, MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000,
            MSG_CMSG_CLOEXEC = 0x40000000;
    public static final int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1;
    public static final int EFD_NONBLOCK = 0x800, EFD_CLOEXEC = 0x80000;
    public static final int EPOLL_CLOEXEC = 0x80000, EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLL_CTL_MOD = 3;
    public static final int EPOLLIN = 0x1, EPOLLOUT = 0x4, EPOLLERR = 0x8, EPOLLHUP = 0x10, EPOLLRDHUP = 0x2000,
            EPOLLET = 1 << 31;
    public static final int MFD_CLOEXEC = 1;
    /** memfd on the default hugepage size (2 MiB on x86-64); sizes must be multiples of it. */
    public static final int MFD_HUGETLB = 4;
    public static final int EOPNOTSUPP = 95;
    public static final int F_GETFL = 3, F_SETFL = 4, F_DUPFD_CLOEXEC = 1030, O_NONBLOCK = 0x800;

    static final Linker LINKER = Linker.nativeLinker();
    static final SymbolLookup LOOKUP = LINKER.defaultLookup();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO_VH =
            CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));

    private static final MethodHandle SOCKET_MH = bind("socket", JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT);
    private static final MethodHandle BIND_MH = bind("bind", JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT);
    private static final MethodHandle LISTEN_MH = bind("listen", JAVA_INT, JAVA_INT, JAVA_INT);
    private static final MethodHandle ACCEPT4_MH = bind("accept4", JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, JAVA_INT);
    private static final MethodHandle CONNECT_MH = bind("connect", JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT);
    private static final MethodHandle SOCKETPAIR_MH = bind("socketpair", JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS);
    private static final MethodHandle CLOSE_MH = bind("close", JAVA_INT, JAVA_INT);
    private static final MethodHandle RECVMSG_MH = bind("recvmsg", JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT);
    private static final MethodHandle SENDMSG_MH = bind("sendmsg", JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT);
    private static final MethodHandle READ_MH = bind("read", JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG);
    private static final MethodHandle WRITE_MH = bind("write", JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG); // eventfd
    private static final MethodHandle MMAP_MH =
            bind("mmap", ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG);
    private static final MethodHandle MUNMAP_MH = bind("munmap", JAVA_INT, ADDRESS, JAVA_LONG);
    private static final MethodHandle EVENTFD_MH = bind("eventfd", JAVA_INT, JAVA_INT, JAVA_INT);
    private static final MethodHandle EPOLL_CREATE1_MH = bind("epoll_create1", JAVA_INT, JAVA_INT);
    private static final MethodHandle EPOLL_CTL_MH = bind("epoll_ctl", JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS);
    private static final MethodHandle EPOLL_WAIT_MH = bind("epoll_wait", JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);
    private static final MethodHandle MEMFD_CREATE_MH = bind("memfd_create", JAVA_INT, ADDRESS, JAVA_INT);
    // Data-path calls without errno capture: the JDK slices the capture segment on every call
    // (SharedUtils.checkCaptureSegment, not force-inlined), 40 bytes whenever escape analysis
    // misses it. These run first; only when one fails is the call made again with errno
    // captured. A failed read, write, pread, pwrite or epoll_wait changed nothing, so asking again
    // is safe: it fails the same way (now with its errno) or, if things changed, succeeds.
    private static final MethodHandle READ_FAST_MH = bindFast("read", JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG);
    private static final MethodHandle WRITE_FAST_MH = bindFast("write", JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG);
    private static final MethodHandle EPOLL_WAIT_FAST_MH =
            bindFast("epoll_wait", JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT);
    private static final MethodHandle FCNTL_MH = LINKER.downcallHandle(
            LOOKUP.find("fcntl").orElseThrow(),
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT),
            Linker.Option.captureCallState("errno"), Linker.Option.firstVariadicArg(2));

    static final long STAT_SIZE = 144;

    static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    /** Per-thread native buffers reused by every call so the hot path allocates nothing. */
    static final class Scratch {
        final Arena arena = Arena.ofAuto();
        final MemorySegment capture = arena.allocate(CAPTURE_LAYOUT);
        final MemorySegment u64 = arena.allocate(JAVA_LONG);
        final MemorySegment stat = arena.allocate(STAT_SIZE, 8);
    }

    private LibC() {}

    static MethodHandle bind(String name, MemoryLayout result, MemoryLayout... args) {
        return LINKER.downcallHandle(LOOKUP.find(name).orElseThrow(),
                FunctionDescriptor.of(result, args), Linker.Option.captureCallState("errno"));
    }

    static MethodHandle bindFast(String name, MemoryLayout result, MemoryLayout... args) {
        return LINKER.downcallHandle(LOOKUP.find(name).orElseThrow(), FunctionDescriptor.of(result, args));
    }

    private static int errno(Scratch s) {
        return (int) ERRNO_VH.get(s.capture, 0L);
    }

    static int ret(Scratch s, int r) {
        return r < 0 ? -errno(s) : r;
    }

    static long ret(Scratch s, long r) {
        return r < 0 ? -errno(s) : r;
    }

    /** Throws for a negative result of one of the calls here; returns it otherwise. */
    public static long check(long result, String what) throws NativeException {
        if (result < 0) {
            throw new NativeException(what, (int) -result);
        }
        return result;
    }

    public static int socket(int domain, int type, int protocol) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) SOCKET_MH.invokeExact(s.capture, domain, type, protocol));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int bind(int fd, MemorySegment addr, int addrLength) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) BIND_MH.invokeExact(s.capture, fd, addr, addrLength));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int listen(int fd, int backlog) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) LISTEN_MH.invokeExact(s.capture, fd, backlog));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int accept4(int fd, int flags) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) ACCEPT4_MH.invokeExact(s.capture, fd, MemorySegment.NULL, MemorySegment.NULL, flags));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int connect(int fd, MemorySegment addr, int addrLength) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) CONNECT_MH.invokeExact(s.capture, fd, addr, addrLength));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Stores the two fds in {@code pair} (8 bytes). */
    public static int socketpair(int domain, int type, int protocol, MemorySegment pair) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) SOCKETPAIR_MH.invokeExact(s.capture, domain, type, protocol, pair));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int close(int fd) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) CLOSE_MH.invokeExact(s.capture, fd));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** A close-on-exec duplicate of {@code fd}, or {@code -errno}. */
    public static int dup(int fd) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) FCNTL_MH.invokeExact(s.capture, fd, F_DUPFD_CLOEXEC, 0));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static long recvmsg(int fd, MemorySegment msghdr, int flags) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (long) RECVMSG_MH.invokeExact(s.capture, fd, msghdr, flags));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static long sendmsg(int fd, MemorySegment msghdr, int flags) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (long) SENDMSG_MH.invokeExact(s.capture, fd, msghdr, flags));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static long read(int fd, MemorySegment buf, long length) {
        try {
            long r = (long) READ_FAST_MH.invokeExact(fd, buf, length);
            if (r >= 0) {
                return r;
            }
            Scratch s = SCRATCH.get();
            return ret(s, (long) READ_MH.invokeExact(s.capture, fd, buf, length));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Returns the mapping's address, or {@code -errno}. */
    public static long mmap(long length, int prot, int flags, int fd, long offset) {
        Scratch s = SCRATCH.get();
        try {
            MemorySegment r = (MemorySegment) MMAP_MH.invokeExact(s.capture, MemorySegment.NULL, length, prot, flags,
                    fd, offset);
            return r.address() == -1L ? -errno(s) : r.address();
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int munmap(long address, long length) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) MUNMAP_MH.invokeExact(s.capture, MemorySegment.ofAddress(address), length));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int eventfd(int initial, int flags) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) EVENTFD_MH.invokeExact(s.capture, initial, flags));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Adds one to an eventfd's counter; 8 on success, or {@code -errno}. Allocation-free. */
    public static long eventfdSignal(int fd) {
        Scratch s = SCRATCH.get();
        s.u64.set(JAVA_LONG, 0, 1L);
        try {
            long r = (long) WRITE_FAST_MH.invokeExact(fd, s.u64, 8L);
            if (r >= 0) {
                return r;
            }
            return ret(s, (long) WRITE_MH.invokeExact(s.capture, fd, s.u64, 8L));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Reads and clears an eventfd's counter; the counter, or {@code -errno} (EAGAIN when zero). */
    public static long eventfdDrain(int fd) {
        Scratch s = SCRATCH.get();
        try {
            long r = (long) READ_FAST_MH.invokeExact(fd, s.u64, 8L);
            if (r < 0) {
                r = ret(s, (long) READ_MH.invokeExact(s.capture, fd, s.u64, 8L));
            }
            return r < 0 ? r : s.u64.get(JAVA_LONG, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int epollCreate() {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) EPOLL_CREATE1_MH.invokeExact(s.capture, EPOLL_CLOEXEC));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** {@code event} is a 12-byte packed {@code struct epoll_event} (or NULL for DEL). */
    public static int epollCtl(int epfd, int op, int fd, MemorySegment event) {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) EPOLL_CTL_MH.invokeExact(s.capture, epfd, op, fd, event));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int epollWait(int epfd, MemorySegment events, int maxEvents, int timeoutMillis) {
        try {
            int r = (int) EPOLL_WAIT_FAST_MH.invokeExact(epfd, events, maxEvents, timeoutMillis);
            if (r >= 0) {
                return r;
            }
            // Once more without capture: the usual failure is EINTR from io_uring task work run on
            // this thread (a ring's completion), after which the wait succeeds at once; only a
            // second failure pays for the errno capture (which may allocate).
            r = (int) EPOLL_WAIT_FAST_MH.invokeExact(epfd, events, maxEvents, timeoutMillis);
            if (r >= 0) {
                return r;
            }
            Scratch s = SCRATCH.get();
            return ret(s, (int) EPOLL_WAIT_MH.invokeExact(s.capture, epfd, events, maxEvents, timeoutMillis));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    public static int memfdCreate(String name, int flags) {
        Scratch s = SCRATCH.get();
        try (Arena a = Arena.ofConfined()) {
            return ret(s, (int) MEMFD_CREATE_MH.invokeExact(s.capture, a.allocateFrom(name), flags));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }














    public static int setNonBlocking(int fd) {
        Scratch s = SCRATCH.get();
        try {
            int flags = ret(s, (int) FCNTL_MH.invokeExact(s.capture, fd, F_GETFL, 0));
            if (flags < 0) {
                return flags;
            }
            return ret(s, (int) FCNTL_MH.invokeExact(s.capture, fd, F_SETFL, flags | O_NONBLOCK));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** Views native memory the kernel handed out (a mapping) as a segment of {@code length} bytes. */
    public static MemorySegment segmentAt(long address, long length, Arena arena, Runnable cleanup) {
        return MemorySegment.ofAddress(address).reinterpret(length, arena, ignored -> cleanup.run());
    }

    /** Rethrows what a downcall threw (it declares Throwable): the one such helper of the package. */
    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) {
            throw r;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new IllegalStateException(t);
    }
}
