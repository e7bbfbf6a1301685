package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/** AF_UNIX stream sockets: listen, accept, connect, socketpair. Control path; any thread. */
public final class UnixSockets {
    private static final int SUN_PATH_OFFSET = 2, SOCKADDR_UN_SIZE = 110;

    private UnixSockets() {}

    private static MemorySegment address(Arena arena, Path path) throws NativeException {
        byte[] bytes = path.toString().getBytes(StandardCharsets.UTF_8);
        if (bytes.length >= SOCKADDR_UN_SIZE - SUN_PATH_OFFSET) {
            throw new NativeException("socket path longer than 107 bytes: " + path, LibC.EINVAL);
        }
        MemorySegment sa = arena.allocate(SOCKADDR_UN_SIZE, 2);
        sa.set(JAVA_SHORT, 0, (short) LibC.AF_UNIX);
        MemorySegment.copy(bytes, 0, sa, JAVA_BYTE, SUN_PATH_OFFSET, bytes.length);
        return sa;
    }

    private static Fd newSocket(boolean nonBlocking) throws NativeException {
        int type = LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC | (nonBlocking ? LibC.SOCK_NONBLOCK : 0);
        return Fd.adopt((int) LibC.check(LibC.socket(LibC.AF_UNIX, type, 0), "socket"));
    }

    /** A non-blocking listening socket bound to {@code path} (which must not exist). */
    public static Fd listen(Path path, int backlog) throws NativeException {
        Fd fd = newSocket(true);
        try (Arena arena = Arena.ofConfined()) {
            LibC.check(LibC.bind(fd.get(), address(arena, path), SOCKADDR_UN_SIZE), "bind " + path);
            LibC.check(LibC.listen(fd.get(), backlog), "listen " + path);
            return fd;
        } catch (NativeException e) {
            fd.close();
            throw e;
        }
    }

    /** Accepts one connection as a non-blocking socket; null when none is pending. */
    public static Fd accept(Fd listener) throws NativeException {
        int r = LibC.accept4(listener.get(), LibC.SOCK_NONBLOCK | LibC.SOCK_CLOEXEC);
        if (r == -LibC.EAGAIN) {
            return null;
        }
        return Fd.adopt((int) LibC.check(r, "accept"));
    }

    /**
     * Connects to {@code path}; the returned socket is blocking or not as asked. A non-blocking
     * connect never waits: when the listener's backlog is full it fails with EAGAIN at once
     * (Unix sockets connect immediately or not at all), where a blocking one would wait for room.
     */
    public static Fd connect(Path path, boolean nonBlocking) throws NativeException {
        Fd fd = newSocket(nonBlocking);
        try (Arena arena = Arena.ofConfined()) {
            LibC.check(LibC.connect(fd.get(), address(arena, path), SOCKADDR_UN_SIZE), "connect " + path);
            return fd;
        } catch (NativeException e) {
            fd.close();
            throw e;
        }
    }

    /** Whether something accepts connections at {@code path} right now. */
    public static boolean isListening(Path path) {
        try (Fd fd = connect(path, false)) {
            return fd.isOpen();
        } catch (NativeException e) {
            return false;
        }
    }

    /** A connected pair of blocking sockets. */
    public static Fd[] pair() throws NativeException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment fds = arena.allocate(JAVA_INT, 2);
            LibC.check(LibC.socketpair(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC, 0, fds), "socketpair");
            return new Fd[] {Fd.adopt(fds.getAtIndex(JAVA_INT, 0)), Fd.adopt(fds.getAtIndex(JAVA_INT, 1))};
        }
    }
}
