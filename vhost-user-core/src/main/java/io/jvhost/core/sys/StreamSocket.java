package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

import io.jvhost.core.sys.LibC.Scratch;

import static io.jvhost.core.sys.LibC.SCRATCH;
import static io.jvhost.core.sys.LibC.bind;
import static io.jvhost.core.sys.LibC.bindFast;
import static io.jvhost.core.sys.LibC.ret;
import static io.jvhost.core.sys.LibC.rethrow;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A connected stream socket (TCP or Unix) used without blocking by one thread: gathering writes
 * and scattering reads through {@code struct iovec} arrays the caller builds in native memory, so
 * bytes go straight between the socket and, say, a guest's buffers. Nothing waits: a full send
 * buffer or an empty receive buffer is {@code -EAGAIN}, for the caller to retry when its poller
 * says the socket is ready. Writes never raise SIGPIPE (a peer that went away is {@code -EPIPE}).
 *
 * <p>{@link #writev}, {@link #readv} and {@link #recv} return bytes or {@code -errno} and allocate
 * nothing; each socket's {@code struct msghdr} is preallocated, so they belong to one thread at a
 * time. Opening and {@link #close} are the control path.
 */
public final class StreamSocket implements AutoCloseable {
    /** {@code struct iovec} on x86-64: base address, then length. */
    public static final long IOVEC_SIZE = 16, IOV_BASE_OFFSET = 0, IOV_LEN_OFFSET = 8;
    /** The most iovecs one call takes (UIO_MAXIOV). */
    public static final int IOV_MAX = 1024;
    /** x86-64 {@code struct msghdr}: name, namelen, iov, iovlen, control, controllen, flags. */
    private static final long MSGHDR_SIZE = 56, MSG_IOV_OFFSET = 16, MSG_IOVLEN_OFFSET = 24;
    private static final int SEND_FLAGS = LibC.MSG_DONTWAIT | LibC.MSG_NOSIGNAL, RECV_FLAGS = LibC.MSG_DONTWAIT;

    // As in LibC: the first try skips errno capture; only a failure is asked again with it.
    private static final MethodHandle SENDMSG_FAST_MH = bindFast("sendmsg", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT);
    private static final MethodHandle SENDMSG_MH = bind("sendmsg", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT);
    private static final MethodHandle RECVMSG_FAST_MH = bindFast("recvmsg", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT);
    private static final MethodHandle RECVMSG_MH = bind("recvmsg", JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_INT);

    private final Fd fd;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment msghdr = arena.allocate(MSGHDR_SIZE, 8);
    private final MemorySegment oneIov = arena.allocate(IOVEC_SIZE, 8);

    private StreamSocket(Fd fd) {
        this.fd = fd;
    }

    /** Takes ownership of the connected stream socket {@code fd} and makes it non-blocking. */
    public static StreamSocket adopt(Fd fd) throws NativeException {
        int r = LibC.setNonBlocking(fd.get());
        if (r < 0) {
            fd.close();
            throw new NativeException("O_NONBLOCK", -r);
        }
        return new StreamSocket(fd);
    }

    /**
     * A socket of its own on the connection behind {@code fd}, which someone else owns (and may
     * close: the connection stays while this one is open). Control path.
     */
    public static StreamSocket duplicate(int fd) throws NativeException {
        return adopt(Fd.adopt((int) LibC.check(LibC.dup(fd), "dup")));
    }

    /** A connected pair of Unix stream sockets (tests: one end plays the peer). */
    public static StreamSocket[] pair() throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment fds = a.allocate(JAVA_INT, 2);
            LibC.check(LibC.socketpair(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC, 0, fds), "socketpair");
            return new StreamSocket[] {adopt(Fd.adopt(fds.get(JAVA_INT, 0))), adopt(Fd.adopt(fds.get(JAVA_INT, 4)))};
        }
    }

    /** The fd (to watch it), -1 once closed. */
    public int fd() {
        return fd.get();
    }

    /**
     * Sends the bytes the {@code count} iovecs at {@code iovAddress} name, in order, as far as the
     * send buffer takes them (at most {@link #IOV_MAX} iovecs per call). Returns the bytes sent,
     * or {@code -errno}: {@code -EAGAIN} when the buffer is full, {@code -EPIPE} or
     * {@code -ECONNRESET} when the peer is gone.
     */
    public long writev(long iovAddress, int count) {
        msghdr.set(JAVA_LONG, MSG_IOV_OFFSET, iovAddress);
        msghdr.set(JAVA_LONG, MSG_IOVLEN_OFFSET, Math.min(count, IOV_MAX));
        try {
            long r = (long) SENDMSG_FAST_MH.invokeExact(fd.get(), msghdr.address(), SEND_FLAGS);
            if (r >= 0) {
                return r;
            }
            Scratch s = SCRATCH.get();
            return ret(s, (long) SENDMSG_MH.invokeExact(s.capture, fd.get(), msghdr.address(), SEND_FLAGS));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /**
     * Receives into the {@code count} iovecs at {@code iovAddress}, filling them in order with
     * what has arrived (at most {@link #IOV_MAX} iovecs per call). Returns the bytes received, 0
     * when the peer closed its side, or {@code -errno} ({@code -EAGAIN}: nothing yet).
     */
    public long readv(long iovAddress, int count) {
        msghdr.set(JAVA_LONG, MSG_IOV_OFFSET, iovAddress);
        msghdr.set(JAVA_LONG, MSG_IOVLEN_OFFSET, Math.min(count, IOV_MAX));
        try {
            long r = (long) RECVMSG_FAST_MH.invokeExact(fd.get(), msghdr.address(), RECV_FLAGS);
            if (r >= 0) {
                return r;
            }
            Scratch s = SCRATCH.get();
            return ret(s, (long) RECVMSG_MH.invokeExact(s.capture, fd.get(), msghdr.address(), RECV_FLAGS));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** As {@link #readv} into the {@code length} bytes at {@code address}. */
    public long recv(long address, long length) {
        oneIov.set(JAVA_LONG, IOV_BASE_OFFSET, address);
        oneIov.set(JAVA_LONG, IOV_LEN_OFFSET, length);
        return readv(oneIov.address(), 1);
    }

    /** As {@link #writev} from the {@code length} bytes at {@code address}. */
    public long send(long address, long length) {
        oneIov.set(JAVA_LONG, IOV_BASE_OFFSET, address);
        oneIov.set(JAVA_LONG, IOV_LEN_OFFSET, length);
        return writev(oneIov.address(), 1);
    }

    /** Closes the socket (the connection ends once no duplicate is left). Once the owning thread is done with it. */
    @Override
    public void close() {
        fd.close();
        if (arena.scope().isAlive()) {
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "stream socket " + fd;
    }
}
