package io.jvhost.core.sys;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.PosixFileAttributeView;
import java.nio.file.attribute.PosixFilePermission;
import java.util.EnumSet;
import java.util.Set;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * AF_UNIX sockets: stream sockets to listen, accept, connect and pair, their access (file mode,
 * group, the peer's credentials), and the datagrams of sd_notify. Control path; any thread.
 */
public final class UnixSockets {
    private static final int SUN_PATH_OFFSET = 2, SOCKADDR_UN_SIZE = 110;

    private UnixSockets() {}

    /** The longest socket path, in bytes, that fits {@code sockaddr_un} with its terminating NUL. */
    public static final int MAX_PATH_BYTES = SOCKADDR_UN_SIZE - SUN_PATH_OFFSET - 1;

    /**
     * Who is at the other end of a connected Unix socket, as the kernel recorded it when the
     * connection was made (SO_PEERCRED): a peer cannot claim another identity.
     */
    public record PeerCredentials(int pid, int uid, int gid) {}

    private static MemorySegment address(Arena arena, Path path) throws NativeException {
        byte[] bytes = path.toString().getBytes(StandardCharsets.UTF_8);
        if (bytes.length > MAX_PATH_BYTES) {
            throw new NativeException("socket path longer than " + MAX_PATH_BYTES + " bytes: " + path, LibC.EINVAL);
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

    /**
     * As {@link #listen(Path, int)}, with the socket file's permissions set to {@code mode} (e.g.
     * 0600) and, unless {@code group} is null, its group to {@code group}, whatever the umask. Both
     * happen between bind and listen: until listen, a connect is refused, so no peer can get in
     * under the umask's permissions. On failure the socket file is removed again.
     */
    public static Fd listen(Path path, int backlog, int mode, GroupPrincipal group) throws IOException {
        if ((mode & ~0777) != 0) {
            throw new IllegalArgumentException("socket mode must be within 0777: " + Integer.toOctalString(mode));
        }
        Fd fd = newSocket(true);
        boolean bound = false;
        try (Arena arena = Arena.ofConfined()) {
            LibC.check(LibC.bind(fd.get(), address(arena, path), SOCKADDR_UN_SIZE), "bind " + path);
            bound = true;
            if (group != null) {
                Files.getFileAttributeView(path, PosixFileAttributeView.class).setGroup(group);
            }
            Files.setPosixFilePermissions(path, permissions(mode));
            LibC.check(LibC.listen(fd.get(), backlog), "listen " + path);
            return fd;
        } catch (IOException | RuntimeException e) {
            fd.close();
            if (bound) {
                Files.deleteIfExists(path);
            }
            throw e;
        }
    }

    /** {@code mode}'s nine permission bits as NIO permissions. */
    static Set<PosixFilePermission> permissions(int mode) {
        Set<PosixFilePermission> set = EnumSet.noneOf(PosixFilePermission.class);
        PosixFilePermission[] order = { // from 0400 down to 0001, the order of the enum
            PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE, PosixFilePermission.OWNER_EXECUTE,
            PosixFilePermission.GROUP_READ, PosixFilePermission.GROUP_WRITE, PosixFilePermission.GROUP_EXECUTE,
            PosixFilePermission.OTHERS_READ, PosixFilePermission.OTHERS_WRITE, PosixFilePermission.OTHERS_EXECUTE};
        for (int i = 0; i < 9; i++) {
            if ((mode & 0400 >> i) != 0) {
                set.add(order[i]);
            }
        }
        return set;
    }

    /** The credentials of the process at the other end of the connected {@code socket}. */
    public static PeerCredentials peerCredentials(Fd socket) throws NativeException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ucred = arena.allocate(12, 4);
            LibC.check(SocketCalls.peerCredentials(socket.get(), ucred), "getsockopt SO_PEERCRED");
            return new PeerCredentials(ucred.get(JAVA_INT, 0), ucred.get(JAVA_INT, 4), ucred.get(JAVA_INT, 8));
        }
    }

    /** The uid of the user called {@code name} (the passwd database, NSS included), or -1 if there is none. */
    public static int uidOf(String name) {
        return SocketCalls.uidOf(name);
    }

    /**
     * Sends {@code message} as one datagram to the Unix datagram socket at {@code address}: a
     * path, or a name in the abstract namespace when it starts with {@code @} (as systemd's
     * {@code NOTIFY_SOCKET} may).
     */
    public static void sendDatagram(String address, byte[] message) throws NativeException {
        byte[] name = address.getBytes(StandardCharsets.UTF_8);
        boolean abstractName = name.length > 0 && name[0] == '@';
        if (name.length == 0 || name.length > MAX_PATH_BYTES) {
            throw new NativeException("datagram socket address of 1.." + MAX_PATH_BYTES + " bytes: '" + address + "'", LibC.EINVAL);
        }
        try (Fd fd = Fd.adopt((int) LibC.check(LibC.socket(LibC.AF_UNIX, SocketCalls.SOCK_DGRAM | LibC.SOCK_CLOEXEC, 0),
                "socket")); Arena arena = Arena.ofConfined()) {
            MemorySegment sa = arena.allocate(SOCKADDR_UN_SIZE, 2);
            sa.set(JAVA_SHORT, 0, (short) LibC.AF_UNIX);
            MemorySegment.copy(name, 0, sa, JAVA_BYTE, SUN_PATH_OFFSET, name.length);
            int length = SOCKADDR_UN_SIZE;
            if (abstractName) {
                sa.set(JAVA_BYTE, SUN_PATH_OFFSET, (byte) 0); // abstract: a leading NUL, and the length says where it ends
                length = SUN_PATH_OFFSET + name.length;
            }
            MemorySegment buf = arena.allocate(Math.max(1, message.length));
            MemorySegment.copy(message, 0, buf, JAVA_BYTE, 0, message.length);
            LibC.check(SocketCalls.sendto(fd.get(), buf.asSlice(0, message.length), LibC.MSG_NOSIGNAL, sa, length),
                    "sendto " + address);
        }
    }

    /** A non-blocking Unix datagram socket bound to {@code path} (which must not exist), to receive with {@link #receive}. */
    public static Fd bindDatagram(Path path) throws NativeException {
        Fd fd = Fd.adopt((int) LibC.check(LibC.socket(LibC.AF_UNIX,
                SocketCalls.SOCK_DGRAM | LibC.SOCK_CLOEXEC | LibC.SOCK_NONBLOCK, 0), "socket"));
        try (Arena arena = Arena.ofConfined()) {
            LibC.check(LibC.bind(fd.get(), address(arena, path), SOCKADDR_UN_SIZE), "bind " + path);
            return fd;
        } catch (NativeException e) {
            fd.close();
            throw e;
        }
    }

    /** The next datagram waiting on the non-blocking {@code socket} (at most 4096 bytes), or null when none waits. */
    public static byte[] receive(Fd socket) throws NativeException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096);
            long n = LibC.read(socket.get(), buf, buf.byteSize());
            if (n == -LibC.EAGAIN) {
                return null;
            }
            LibC.check(n, "read datagram");
            return buf.asSlice(0, n).toArray(JAVA_BYTE);
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
        try (Fd fd = connect(path, true)) { // never waits, even on a full backlog
            return fd.isOpen();
        } catch (NativeException e) {
            return e.errno() == LibC.EAGAIN; // a full backlog: someone listens and is busy
        }
    }

    /**
     * The credentials of the process listening at {@code path} as of its listen (pid, uid), or null
     * when nothing accepts connections there or its backlog is full. Connects, and so shows the
     * listener a connection that closes at once.
     */
    public static PeerCredentials listener(Path path) {
        try (Fd fd = connect(path, true)) {
            return peerCredentials(fd);
        } catch (NativeException e) {
            return null;
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
