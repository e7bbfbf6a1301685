package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.ref.Reference;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.ByteOrder;

import io.jvhost.core.sys.LibC.Scratch;

import static io.jvhost.core.sys.LibC.SCRATCH;
import static io.jvhost.core.sys.LibC.bind;
import static io.jvhost.core.sys.LibC.bindFast;
import static io.jvhost.core.sys.LibC.ret;
import static io.jvhost.core.sys.LibC.rethrow;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_INT_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * A UDP socket (IPv4 or IPv6) for datagrams in bulk: a {@link Sender} sends one datagram in two
 * pieces, a header of the caller's and a body straight from native memory such as a guest's, to
 * one or several destinations with one {@code sendmmsg}; a {@link Receiver} takes batches with
 * {@code recvmmsg} into its preallocated native buffers. Both reuse their native structures, so
 * neither allocates per call; each belongs to one thread at a time.
 *
 * <p>The socket blocks: a sender passes {@code MSG_DONTWAIT} and so never waits for room in the
 * send buffer (it gets {@code -EAGAIN}), a receiver waits for the first datagram of a batch
 * ({@code MSG_WAITFORONE}) until one comes or {@link #shutdownInput} wakes it. Set-up and options
 * are the control path and throw {@link NativeException}; sending and receiving return
 * {@code -errno}.
 */
public final class UdpSocket implements AutoCloseable {
    public static final int AF_INET = 2, AF_INET6 = 10;
    /** {@link #setOption} levels and options (asm-generic/socket.h, linux/udp.h). */
    public static final int SOL_SOCKET = 1, SO_SNDBUF = 7, SO_RCVBUF = 8, SO_NO_CHECK = 11,
            SOL_UDP = 17, UDP_NO_CHECK6_TX = 101;
    private static final int SOCK_DGRAM = 2, SHUT_RD = 0;
    private static final int MSG_TRUNC = 0x20, MSG_WAITFORONE = 0x10000;
    /** x86-64 {@code struct mmsghdr}: a {@code struct msghdr} (56 bytes), then {@code msg_len}. */
    private static final long MMSGHDR_SIZE = 64, NAME_OFFSET = 0, NAMELEN_OFFSET = 8, IOV_OFFSET = 16,
            IOVLEN_OFFSET = 24, FLAGS_OFFSET = 48, LEN_OFFSET = 56, IOVEC_SIZE = 16;
    private static final int SOCKADDR_IN_SIZE = 16, SOCKADDR_IN6_SIZE = 28;
    private static final ValueLayout.OfShort BE_SHORT = JAVA_SHORT.withOrder(ByteOrder.BIG_ENDIAN);

    // The vectors go as plain addresses (no segment per call); the FAST handles skip errno capture
    // and a failed call is asked again with it (see LibC).
    private static final MethodHandle SENDMMSG_MH = bind("sendmmsg", JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT);
    private static final MethodHandle SENDMMSG_FAST_MH = bindFast("sendmmsg", JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT);
    private static final MethodHandle RECVMMSG_MH =
            bind("recvmmsg", JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG);
    private static final MethodHandle RECVMMSG_FAST_MH =
            bindFast("recvmmsg", JAVA_INT, JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_LONG);

    private final Fd fd;
    private final boolean ipv6;
    private final int port;

    private UdpSocket(Fd fd, boolean ipv6, int port) {
        this.fd = fd;
        this.ipv6 = ipv6;
        this.port = port;
    }

    /**
     * A socket bound to {@code local} (a wildcard address for every address of its family; port 0
     * for one the kernel picks from its ephemeral range). Its family is {@code local}'s.
     */
    public static UdpSocket open(InetSocketAddress local) throws NativeException {
        Address a = Address.of(local);
        Fd fd = Fd.adopt((int) LibC.check(LibC.socket(a.ipv6 ? AF_INET6 : AF_INET, SOCK_DGRAM | LibC.SOCK_CLOEXEC, 0),
                "socket"));
        try {
            LibC.check(LibC.bind(fd.get(), a.sockaddr, a.length), "bind UDP " + a);
        } catch (NativeException e) {
            fd.close();
            throw e;
        }
        return adopt(fd, a.ipv6); // the port is the kernel's when local's is 0
    }

    /**
     * The bound socket {@code fd} a predecessor process handed over (live upgrade), of the family
     * {@code ipv6} says; takes ownership of {@code fd} (closes it when it fails).
     */
    public static UdpSocket adopt(Fd fd, boolean ipv6) throws NativeException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment name = arena.allocate(SOCKADDR_IN6_SIZE, 8);
            LibC.check(SocketCalls.localAddress(fd.get(), name), "getsockname");
            return new UdpSocket(fd, ipv6, Short.toUnsignedInt(name.get(BE_SHORT, 2)));
        } catch (NativeException e) {
            fd.close();
            throw e;
        }
    }

    /** A duplicate of the socket, for a successor process (live upgrade); the caller closes it. */
    public Fd duplicateFd() throws NativeException {
        return fd.dup();
    }

    /** Sets an int option ({@link #SO_RCVBUF}, {@link #SO_NO_CHECK}, ...). */
    public void setOption(int level, int option, int value) throws NativeException {
        LibC.check(SocketCalls.setIntOption(fd.get(), level, option, value), "setsockopt " + level + "/" + option);
    }

    public boolean ipv6() {
        return ipv6;
    }

    /** The port it is bound to. */
    public int localPort() {
        return port;
    }

    /** The fd, -1 once closed. */
    public int fd() {
        return fd.get();
    }

    /**
     * Shuts the receiving side: a {@link Receiver} waiting on the socket returns at once, and does
     * so from now on (0 bytes of a datagram nobody sent; its thread is to look at why it woke).
     * Any thread.
     */
    public void shutdownInput() {
        // On UDP, Linux answers ENOTCONN but marks the socket shut and wakes its waiters all the
        // same (inet_shutdown: "wake up other listeners ... even on unconnected UDP sockets").
        SocketCalls.shutdown(fd.get(), SHUT_RD);
    }

    /** Closes the socket; wake and stop its receiver first ({@link #shutdownInput}). */
    @Override
    public void close() {
        fd.close();
    }

    /**
     * A socket address in its native form ({@code sockaddr_in} or {@code sockaddr_in6}, scope id
     * included), made once and then read by any thread: a destination for a {@link Sender}, a host
     * a {@link Receiver} matches senders against.
     */
    public static final class Address {
        private final InetSocketAddress socketAddress;
        private final MemorySegment sockaddr;
        private final int length;
        private final boolean ipv6;
        /** The host as read from a native address: IPv4 in {@link #v4}, IPv6 in the two longs. */
        private final int v4;
        private final long v6High, v6Low;

        private Address(InetSocketAddress socketAddress) {
            this.socketAddress = socketAddress;
            InetAddress host = socketAddress.getAddress();
            this.ipv6 = host instanceof Inet6Address;
            this.length = ipv6 ? SOCKADDR_IN6_SIZE : SOCKADDR_IN_SIZE;
            this.sockaddr = Arena.ofAuto().allocate(SOCKADDR_IN6_SIZE, 8);
            sockaddr.set(JAVA_SHORT, 0, (short) (ipv6 ? AF_INET6 : AF_INET));
            sockaddr.set(BE_SHORT, 2, (short) socketAddress.getPort());
            byte[] bytes = host.getAddress();
            MemorySegment.copy(bytes, 0, sockaddr, JAVA_BYTE, ipv6 ? 8 : 4, bytes.length);
            if (ipv6) {
                sockaddr.set(JAVA_INT, 24, ((Inet6Address) host).getScopeId());
            }
            this.v4 = ipv6 ? 0 : sockaddr.get(JAVA_INT, 4);
            this.v6High = ipv6 ? sockaddr.get(JAVA_LONG, 8) : 0;
            this.v6Low = ipv6 ? sockaddr.get(JAVA_LONG, 16) : 0;
        }

        /** {@code address} in native form; it must be resolved. */
        public static Address of(InetSocketAddress address) {
            if (address.isUnresolved()) {
                throw new IllegalArgumentException("unresolved address: " + address);
            }
            return new Address(address);
        }

        public InetSocketAddress socketAddress() {
            return socketAddress;
        }

        public boolean ipv6() {
            return ipv6;
        }

        /** Whether the native {@code name} of {@code nameLength} bytes at {@code offset} is on this host (any port). */
        boolean isHostOf(MemorySegment name, long offset, int nameLength) {
            int family = name.get(JAVA_SHORT, offset);
            if (ipv6) {
                return family == AF_INET6 && nameLength >= SOCKADDR_IN6_SIZE
                        && name.get(JAVA_LONG_UNALIGNED, offset + 8) == v6High
                        && name.get(JAVA_LONG_UNALIGNED, offset + 16) == v6Low;
            }
            return family == AF_INET && nameLength >= SOCKADDR_IN_SIZE && name.get(JAVA_INT_UNALIGNED, offset + 4) == v4;
        }

        @Override
        public String toString() {
            return (ipv6 ? "[" + socketAddress.getAddress().getHostAddress() + "]" : socketAddress.getAddress().getHostAddress())
                    + ":" + socketAddress.getPort();
        }
    }

    /**
     * Sends datagrams of two pieces with {@code sendmmsg}: the same bytes to each of up to
     * {@link #capacity} destinations per call. One per sending thread: its {@code struct mmsghdr}
     * array and {@code iovec} pair are preallocated and rewritten on each call.
     */
    public static final class Sender {
        private final int capacity;
        private final MemorySegment iov;
        private final MemorySegment messages;

        public Sender(int capacity) {
            if (capacity < 1 || capacity > 1024) { // sendmmsg takes at most UIO_MAXIOV (1024) per call
                throw new IllegalArgumentException("destinations per call must be 1..1024: " + capacity);
            }
            this.capacity = capacity;
            Arena arena = Arena.ofAuto();
            this.iov = arena.allocate(2 * IOVEC_SIZE, 8);
            this.messages = arena.allocate(MMSGHDR_SIZE * capacity, 8);
            for (int i = 0; i < capacity; i++) {
                messages.set(JAVA_LONG, i * MMSGHDR_SIZE + IOV_OFFSET, iov.address());
                messages.set(JAVA_LONG, i * MMSGHDR_SIZE + IOVLEN_OFFSET, 2L);
            }
        }

        /** Destinations one call reaches at most. */
        public int capacity() {
            return capacity;
        }

        /**
         * Sends {@code head} then {@code body} (both native; the caller keeps them mapped during
         * the call), as one datagram from {@code socket} to each of {@code to[first]} ..
         * {@code to[first + count - 1]}, at most {@link #capacity} of them. Returns how many were
         * sent, in order (the next failed, if fewer than asked: ask again from there to learn why),
         * or {@code -errno} when the first was not: {@code -EAGAIN} when the send buffer is full.
         * Never waits. Allocation-free; this sender's thread only.
         */
        public int send(UdpSocket socket, Address[] to, int first, int count, MemorySegment head, long headOffset,
                        long headLength, MemorySegment body, long bodyOffset, long bodyLength) {
            long headAddress = FileCalls.addressOf(head, headOffset, headLength);
            long bodyAddress = FileCalls.addressOf(body, bodyOffset, bodyLength);
            if (headAddress == 0 || bodyAddress == 0) {
                return -LibC.EFAULT;
            }
            int n = Math.min(count, capacity);
            if (n <= 0) {
                return 0;
            }
            iov.set(JAVA_LONG, 0, headAddress);
            iov.set(JAVA_LONG, 8, headLength);
            iov.set(JAVA_LONG, IOVEC_SIZE, bodyAddress);
            iov.set(JAVA_LONG, IOVEC_SIZE + 8, bodyLength);
            for (int i = 0; i < n; i++) {
                Address a = to[first + i];
                messages.set(JAVA_LONG, i * MMSGHDR_SIZE + NAME_OFFSET, a.sockaddr.address());
                messages.set(JAVA_INT, i * MMSGHDR_SIZE + NAMELEN_OFFSET, a.length);
            }
            int flags = LibC.MSG_DONTWAIT | LibC.MSG_NOSIGNAL;
            try {
                int r = (int) SENDMMSG_FAST_MH.invokeExact(socket.fd.get(), messages.address(), n, flags);
                if (r >= 0) {
                    return r;
                }
                Scratch s = SCRATCH.get();
                return ret(s, (int) SENDMMSG_MH.invokeExact(s.capture, socket.fd.get(), messages.address(), n, flags));
            } catch (Throwable t) {
                throw rethrow(t);
            } finally {
                Reference.reachabilityFence(head);
                Reference.reachabilityFence(body);
                Reference.reachabilityFence(to); // the destinations' native addresses
                Reference.reachabilityFence(this);
            }
        }
    }

    /**
     * Receives up to {@code batch} datagrams per {@code recvmmsg} into preallocated native buffers
     * of {@code bufferSize} bytes each, with their senders' addresses. One thread's: the datagrams
     * of a call stay in place until its next call.
     */
    public static final class Receiver {
        private static final long NAME_STRIDE = 32;
        private final int batch;
        private final int bufferSize;
        private final long slot;
        private final MemorySegment buffers;
        private final MemorySegment names;
        private final MemorySegment messages;
        private final MemorySegment iovecs;

        public Receiver(int batch, int bufferSize) {
            if (batch < 1 || batch > 1024 || bufferSize < 1) {
                throw new IllegalArgumentException("batch 1..1024 of buffers of at least 1 byte: " + batch + " x " + bufferSize);
            }
            this.batch = batch;
            this.bufferSize = bufferSize;
            this.slot = (bufferSize + 63L) & ~63L;
            Arena arena = Arena.ofAuto();
            this.buffers = arena.allocate(slot * batch, 64);
            this.names = arena.allocate(NAME_STRIDE * batch, 8);
            this.messages = arena.allocate(MMSGHDR_SIZE * batch, 8);
            this.iovecs = arena.allocate(IOVEC_SIZE * batch, 8);
            for (int i = 0; i < batch; i++) {
                iovecs.set(JAVA_LONG, i * IOVEC_SIZE, buffers.address() + i * slot);
                iovecs.set(JAVA_LONG, i * IOVEC_SIZE + 8, (long) bufferSize);
                long m = i * MMSGHDR_SIZE;
                messages.set(JAVA_LONG, m + NAME_OFFSET, names.address() + i * NAME_STRIDE);
                messages.set(JAVA_LONG, m + IOV_OFFSET, iovecs.address() + i * IOVEC_SIZE);
                messages.set(JAVA_LONG, m + IOVLEN_OFFSET, 1L);
            }
        }

        /**
         * Waits for a datagram on {@code socket} and takes it with the others already waiting, up
         * to the batch: how many, or {@code -errno} ({@code -EINTR} or {@code -EAGAIN}: none yet, ask
         * again). After {@link UdpSocket#shutdownInput} it returns at once. Allocation-free.
         */
        public int receive(UdpSocket socket) {
            for (int i = 0; i < batch; i++) {
                messages.set(JAVA_INT, i * MMSGHDR_SIZE + NAMELEN_OFFSET, SOCKADDR_IN6_SIZE); // in and out
            }
            long vector = messages.address();
            try {
                int r = (int) RECVMMSG_FAST_MH.invokeExact(socket.fd.get(), vector, batch, MSG_WAITFORONE, 0L);
                if (r >= 0) {
                    return r;
                }
                // Asked again with errno captured, not waiting: a lasting error repeats; a passing one
                // (EINTR) shows as EAGAIN, or the datagrams that came meanwhile.
                Scratch s = SCRATCH.get();
                return ret(s, (int) RECVMMSG_MH.invokeExact(s.capture, socket.fd.get(), vector, batch,
                        MSG_WAITFORONE | LibC.MSG_DONTWAIT, 0L));
            } catch (Throwable t) {
                throw rethrow(t);
            } finally {
                Reference.reachabilityFence(this);
            }
        }

        /** Where the datagrams are: datagram {@code i} at {@link #offset}. */
        public MemorySegment buffers() {
            return buffers;
        }

        public long offset(int i) {
            return i * slot;
        }

        /** Bytes of datagram {@code i}: at most the buffer size, see {@link #truncated}. */
        public int length(int i) {
            return Math.min(messages.get(JAVA_INT, i * MMSGHDR_SIZE + LEN_OFFSET), bufferSize);
        }

        /** Whether datagram {@code i} was longer than its buffer (its tail is lost). */
        public boolean truncated(int i) {
            return (messages.get(JAVA_INT, i * MMSGHDR_SIZE + FLAGS_OFFSET) & MSG_TRUNC) != 0;
        }

        /** The index in {@code among} of the first address on datagram {@code i}'s sender host (any port), or -1. */
        public int senderAmong(int i, Address[] among) {
            long name = i * NAME_STRIDE;
            int nameLength = messages.get(JAVA_INT, i * MMSGHDR_SIZE + NAMELEN_OFFSET);
            for (int j = 0; j < among.length; j++) {
                if (among[j].isHostOf(names, name, nameLength)) {
                    return j;
                }
            }
            return -1;
        }

        /** Datagram {@code i}'s sender host, for a log line (allocates); null if it has no IP address. */
        public InetAddress sender(int i) {
            long name = i * NAME_STRIDE;
            int family = names.get(JAVA_SHORT, name);
            if (family != AF_INET && family != AF_INET6) {
                return null;
            }
            byte[] bytes = new byte[family == AF_INET ? 4 : 16];
            MemorySegment.copy(names, JAVA_BYTE, name + (family == AF_INET ? 4 : 8), bytes, 0, bytes.length);
            try {
                return InetAddress.getByAddress(bytes);
            } catch (UnknownHostException e) {
                return null; // only for a wrong length, which this is not
            }
        }
    }
}
