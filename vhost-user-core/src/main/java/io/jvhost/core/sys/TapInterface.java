package io.jvhost.core.sys;


import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/**
 * A Linux TAP interface opened through {@code /dev/net/tun}: created if it does not exist, attached
 * to if it does. One fd per queue (IFF_MULTI_QUEUE when more than one). Frames are plain Ethernet
 * (IFF_NO_PI). Reads and writes are non-blocking and return {@code -errno}; any thread.
 */
public final class TapInterface implements AutoCloseable {
    private static final long TUNSETIFF = 0x400454caL;
    private static final short IFF_TAP = 0x0002, IFF_NO_PI = 0x1000, IFF_MULTI_QUEUE = 0x0100;
    private static final int IFNAMSIZ = 16, IFREQ_SIZE = 40;

    private final String name;
    private final Fd[] queues;

    private TapInterface(String name, Fd[] queues) {
        this.name = name;
        this.queues = queues;
    }

    /** Opens (creating if needed) TAP interface {@code name} with {@code queueCount} queues. Needs CAP_NET_ADMIN. */
    public static TapInterface open(String name, int queueCount) throws NativeException {
        byte[] bytes = name.getBytes(StandardCharsets.US_ASCII);
        if (bytes.length == 0 || bytes.length >= IFNAMSIZ) {
            throw new NativeException("TAP name must be 1..15 characters: " + name, LibC.EINVAL);
        }
        Fd[] fds = new Fd[queueCount];
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ifr = arena.allocate(IFREQ_SIZE, 8);
            MemorySegment.copy(bytes, 0, ifr, ValueLayout.JAVA_BYTE, 0, bytes.length);
            ifr.set(ValueLayout.JAVA_SHORT, IFNAMSIZ, (short) (IFF_TAP | IFF_NO_PI | (queueCount > 1 ? IFF_MULTI_QUEUE : 0)));
            for (int i = 0; i < queueCount; i++) {
                fds[i] = Fd.adopt((int) LibC.check(FileCalls.open("/dev/net/tun", FileCalls.O_RDWR | FileCalls.O_CLOEXEC), "open /dev/net/tun"));
                LibC.check(FileCalls.ioctl(fds[i].get(), TUNSETIFF, ifr), "TUNSETIFF " + name);
                LibC.check(LibC.setNonBlocking(fds[i].get()), "O_NONBLOCK");
            }
        } catch (NativeException e) {
            Fd.closeAll(fds);
            throw e;
        }
        return new TapInterface(name, fds);
    }

    public String name() {
        return name;
    }

    public int queueCount() {
        return queues.length;
    }

    /** The fd of queue {@code i}, for readiness (epoll). */
    public int fd(int i) {
        return queues[i].get();
    }

    /** Reads one frame into {@code dst}; its length, or {@code -errno} (-EAGAIN when none waits). */
    public long read(int queue, MemorySegment dst) {
        return LibC.read(queues[queue].get(), dst, dst.byteSize());
    }

    /**
     * Writes one frame, {@code [offset, offset + length)} of {@code buf} (native memory, e.g. guest
     * memory, which the caller keeps mapped during the call); bytes written or {@code -errno}.
     * Allocation-free.
     */
    public long write(int queue, MemorySegment buf, long offset, long length) {
        return FileCalls.write(queues[queue].get(), buf, offset, length);
    }

    @Override
    public void close() {
        Fd.closeAll(queues);
    }
}
