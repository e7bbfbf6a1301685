package io.jvhost.core.sys;

import static io.jvhost.core.sys.LibC.rethrow;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The control-path calls behind socket access, service readiness and UDP set-up: {@code getsockopt}
 * (SO_PEERCRED), {@code sendto} on a datagram socket (sd_notify), {@code getpwnam}, and
 * {@code setsockopt}, {@code getsockname} and {@code shutdown} for {@link UdpSocket}. Kept apart
 * from {@link LibC}, whose calls the data path makes. Each returns the result or {@code -errno};
 * each allocates (a confined arena per call), which is fine where they are used.
 */
final class SocketCalls {
    static final int SOCK_DGRAM = 2, SO_PEERCRED = 17;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LOOKUP = LINKER.defaultLookup();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO_VH = CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));

    private static final MethodHandle GETSOCKOPT_MH = bind("getsockopt", JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS);
    private static final MethodHandle SENDTO_MH = bind("sendto", JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT);
    private static final MethodHandle GETPWNAM_MH = bind("getpwnam", ADDRESS, ADDRESS);
    private static final MethodHandle SETSOCKOPT_MH = bind("setsockopt", JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT);
    private static final MethodHandle GETSOCKNAME_MH = bind("getsockname", JAVA_INT, JAVA_INT, ADDRESS, ADDRESS);
    private static final MethodHandle SHUTDOWN_MH = bind("shutdown", JAVA_INT, JAVA_INT, JAVA_INT);
    /** {@code struct passwd}: char *pw_name, char *pw_passwd, uid_t pw_uid, gid_t pw_gid, ... (x86-64). */
    private static final long PW_UID_OFFSET = 16, PW_PREFIX_SIZE = 24;

    private SocketCalls() {}

    private static MethodHandle bind(String name, MemoryLayout result, MemoryLayout... args) {
        return LINKER.downcallHandle(LOOKUP.find(name).orElseThrow(),
                FunctionDescriptor.of(result, args), Linker.Option.captureCallState("errno"));
    }

    /** {@code getsockopt(fd, SOL_SOCKET, SO_PEERCRED)} into {@code ucred} (pid, uid, gid: 12 bytes). */
    static int peerCredentials(int fd, MemorySegment ucred) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment capture = a.allocate(CAPTURE_LAYOUT);
            MemorySegment length = a.allocateFrom(JAVA_INT, (int) ucred.byteSize());
            int r = (int) GETSOCKOPT_MH.invokeExact(capture, fd, LibC.SOL_SOCKET, SO_PEERCRED, ucred, length);
            return r < 0 ? -(int) ERRNO_VH.get(capture, 0L) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** {@code setsockopt(fd, level, option)} to the int {@code value}. */
    static int setIntOption(int fd, int level, int option, int value) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment capture = a.allocate(CAPTURE_LAYOUT);
            int r = (int) SETSOCKOPT_MH.invokeExact(capture, fd, level, option, a.allocateFrom(JAVA_INT, value), 4);
            return r < 0 ? -(int) ERRNO_VH.get(capture, 0L) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** The address {@code fd} is bound to, into {@code address}; its length, or {@code -errno}. */
    static int localAddress(int fd, MemorySegment address) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment capture = a.allocate(CAPTURE_LAYOUT);
            MemorySegment length = a.allocateFrom(JAVA_INT, (int) address.byteSize());
            int r = (int) GETSOCKNAME_MH.invokeExact(capture, fd, address, length);
            return r < 0 ? -(int) ERRNO_VH.get(capture, 0L) : length.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** {@code shutdown(fd, how)}: 0 or {@code -errno}. */
    static int shutdown(int fd, int how) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment capture = a.allocate(CAPTURE_LAYOUT);
            int r = (int) SHUTDOWN_MH.invokeExact(capture, fd, how);
            return r < 0 ? -(int) ERRNO_VH.get(capture, 0L) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static long sendto(int fd, MemorySegment buf, int flags, MemorySegment address, int addressLength) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment capture = a.allocate(CAPTURE_LAYOUT);
            long r = (long) SENDTO_MH.invokeExact(capture, fd, buf, buf.byteSize(), flags, address, addressLength);
            return r < 0 ? -(int) ERRNO_VH.get(capture, 0L) : r;
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** The uid of user {@code name} (passwd database, NSS included), or -1 if there is none. Not thread-safe (getpwnam). */
    static synchronized int uidOf(String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment capture = a.allocate(CAPTURE_LAYOUT);
            MemorySegment pw = (MemorySegment) GETPWNAM_MH.invokeExact(capture, a.allocateFrom(name));
            if (pw.address() == 0) {
                return -1;
            }
            return pw.reinterpret(PW_PREFIX_SIZE).get(JAVA_INT, PW_UID_OFFSET);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }
}
