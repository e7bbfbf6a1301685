package io.jvhost.core.sys;


import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/**
 * A Linux TAP interface opened through {@code /dev/net/tun}: created if it does not exist, attached
 * to if it does. One fd per queue (IFF_MULTI_QUEUE when more than one). Frames are Ethernet
 * (IFF_NO_PI), each behind a 10-byte virtio-net header when opened with one (IFF_VNET_HDR): then
 * checksum and segmentation offloads cross the TAP in both directions, as far as
 * {@link #setOffloads} allows for frames towards the reader. Reads and writes are non-blocking and
 * return {@code -errno}; a queue is written by one thread at a time.
 */
public final class TapInterface implements AutoCloseable {
    private static final long TUNSETIFF = 0x400454caL;
    private static final long TUNSETOFFLOAD = 0x400454d0L;
    private static final short IFF_TAP = 0x0002, IFF_NO_PI = 0x1000, IFF_MULTI_QUEUE = 0x0100, IFF_VNET_HDR = 0x4000;
    /** {@link #setOffloads} flags: what the reader takes (linux/if_tun.h). */
    public static final int TUN_F_CSUM = 0x01, TUN_F_TSO4 = 0x02, TUN_F_TSO6 = 0x04, TUN_F_TSO_ECN = 0x08;
    /** The header in front of each frame with IFF_VNET_HDR: struct virtio_net_hdr, the kernel's default size. */
    public static final int VNET_HEADER_SIZE = 10;
    private static final int IFNAMSIZ = 16, IFREQ_SIZE = 40;

    private final String name;
    private final Fd[] queues;
    private final boolean vnetHeader;
    /** Per queue: the iovec pair of {@link #write(int, MemorySegment, MemorySegment, long, long)}. */
    private final MemorySegment[] iovecs;

    private TapInterface(String name, Fd[] queues, boolean vnetHeader) {
        this.name = name;
        this.queues = queues;
        this.vnetHeader = vnetHeader;
        this.iovecs = new MemorySegment[queues.length];
        for (int i = 0; i < queues.length; i++) {
            iovecs[i] = Arena.ofAuto().allocate(FileCalls.IOVEC_PAIR_SIZE, 8);
        }
    }

    /** Opens (creating if needed) TAP interface {@code name} with {@code queueCount} queues, frames without a header. */
    public static TapInterface open(String name, int queueCount) throws NativeException {
        return open(name, queueCount, false);
    }

    /**
     * Opens (creating if needed) TAP interface {@code name} with {@code queueCount} queues, each
     * frame behind a virtio-net header when {@code vnetHeader}. Needs CAP_NET_ADMIN.
     */
    public static TapInterface open(String name, int queueCount, boolean vnetHeader) throws NativeException {
        byte[] bytes = name.getBytes(StandardCharsets.US_ASCII);
        if (bytes.length == 0 || bytes.length >= IFNAMSIZ) {
            throw new NativeException("TAP name must be 1..15 characters: " + name, LibC.EINVAL);
        }
        Fd[] fds = new Fd[queueCount];
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ifr = arena.allocate(IFREQ_SIZE, 8);
            MemorySegment.copy(bytes, 0, ifr, ValueLayout.JAVA_BYTE, 0, bytes.length);
            ifr.set(ValueLayout.JAVA_SHORT, IFNAMSIZ, (short) (IFF_TAP | IFF_NO_PI
                    | (queueCount > 1 ? IFF_MULTI_QUEUE : 0) | (vnetHeader ? IFF_VNET_HDR : 0)));
            for (int i = 0; i < queueCount; i++) {
                fds[i] = Fd.adopt((int) LibC.check(FileCalls.open("/dev/net/tun", FileCalls.O_RDWR | FileCalls.O_CLOEXEC), "open /dev/net/tun"));
                LibC.check(FileCalls.ioctl(fds[i].get(), TUNSETIFF, ifr), "TUNSETIFF " + name);
                LibC.check(LibC.setNonBlocking(fds[i].get()), "O_NONBLOCK");
            }
        } catch (NativeException e) {
            Fd.closeAll(fds);
            throw e;
        }
        return new TapInterface(name, fds, vnetHeader);
    }

    /**
     * The TAP {@code name} on queue fds a predecessor process opened (live upgrade): takes
     * ownership of {@code fds}, one per queue, as {@link #open} made them.
     */
    public static TapInterface adopt(String name, java.util.List<Fd> fds, boolean vnetHeader) {
        return new TapInterface(name, fds.toArray(new Fd[0]), vnetHeader);
    }

    /** Duplicates of every queue's fd, for a successor process (live upgrade); the caller closes them. */
    public java.util.List<Fd> duplicateFds() throws NativeException {
        java.util.List<Fd> dups = new java.util.ArrayList<>();
        try {
            for (Fd q : queues) {
                dups.add(q.dup());
            }
        } catch (NativeException e) {
            dups.forEach(Fd::close);
            throw e;
        }
        return dups;
    }

    public boolean hasVnetHeader() {
        return vnetHeader;
    }

    /**
     * Which offloads frames read from this TAP may carry ({@code TUN_F_*}): the kernel checksums and
     * segments the rest before they reach the reader. Any thread.
     */
    public void setOffloads(int flags) throws NativeException {
        LibC.check(FileCalls.ioctl(queues[0].get(), TUNSETOFFLOAD, MemorySegment.ofAddress(flags)),
                "TUNSETOFFLOAD " + name);
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

    /**
     * Writes one frame behind its virtio-net header ({@link #VNET_HEADER_SIZE} bytes of
     * {@code header}) with one writev, the frame straight from {@code buf} (e.g. guest memory);
     * bytes written or {@code -errno}. Allocation-free; queue {@code queue}'s writer thread only.
     */
    public long write(int queue, MemorySegment header, MemorySegment buf, long offset, long length) {
        return FileCalls.write2(queues[queue].get(), iovecs[queue], header, 0, VNET_HEADER_SIZE, buf, offset, length);
    }

    /**
     * Writes one frame made of the pieces of {@code v} (with a virtio-net header, it is the first
     * {@link #VNET_HEADER_SIZE} bytes) with one writev: a frame that lies in several pieces of guest
     * memory goes out without being copied together first. Bytes written or {@code -errno}.
     * Allocation-free; queue {@code queue}'s writer thread only.
     */
    public long write(int queue, IoVector v) {
        return FileCalls.writev(queues[queue].get(), v);
    }

    @Override
    public void close() {
        Fd.closeAll(queues);
    }
}
