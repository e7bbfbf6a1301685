package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * recvmsg/sendmsg with SCM_RIGHTS over one socket, with native buffers preallocated per socket.
 *
 * <p>Received fds are counted from {@code cmsg_len}, adopted at once and, when the kernel truncated
 * the control data ({@code MSG_CTRUNC}), all closed before the call fails. Confined to one thread
 * at a time.
 */
public final class MessageIo implements AutoCloseable {
    /** Room for more fds than any vhost-user message may carry, so excess shows up as an error. */
    public static final int MAX_FDS = 32;
    private static final long CMSG_HEADER = 16;
    private static final long CONTROL_SIZE = CMSG_HEADER + 4L * MAX_FDS;
    private static final long MSGHDR_SIZE = 56, IOV_OFFSET = 16, IOVLEN_OFFSET = 24, CONTROL_OFFSET = 32,
            CONTROLLEN_OFFSET = 40, FLAGS_OFFSET = 48;

    private final Arena arena = Arena.ofShared();
    private final MemorySegment msghdr = arena.allocate(MSGHDR_SIZE, 8);
    private final MemorySegment iov = arena.allocate(16, 8);
    private final MemorySegment control = arena.allocate(CONTROL_SIZE, 8);
    private final MemorySegment rxBuffer;
    private final MemorySegment txBuffer;

    public MessageIo(long bufferSize) {
        this.rxBuffer = arena.allocate(bufferSize, 8);
        this.txBuffer = arena.allocate(bufferSize, 8);
    }

    /** Where {@link #receive} puts bytes. */
    public MemorySegment rxBuffer() {
        return rxBuffer;
    }

    /** Where {@link #send} takes bytes from. */
    public MemorySegment txBuffer() {
        return txBuffer;
    }

    /** Result of one receive: bytes read (0 on EOF) or {@code -errno}, and the fds that came with them. */
    public record Received(long bytes, Fd[] fds) {}

    private static final Fd[] NO_FDS = new Fd[0];

    /**
     * Receives up to {@code length} bytes into the rx buffer at {@code offset}, with any fds attached.
     * Fails with {@code -EINVAL} (after closing them) when the kernel truncated the fds.
     */
    public Received receive(int socket, long offset, long length, boolean wait) {
        iov.set(ADDRESS, 0, rxBuffer.asSlice(offset, length));
        iov.set(JAVA_LONG, 8, length);
        msghdr.fill((byte) 0);
        msghdr.set(ADDRESS, IOV_OFFSET, iov);
        msghdr.set(JAVA_LONG, IOVLEN_OFFSET, 1L);
        msghdr.set(ADDRESS, CONTROL_OFFSET, control);
        msghdr.set(JAVA_LONG, CONTROLLEN_OFFSET, CONTROL_SIZE);
        long n = LibC.recvmsg(socket, msghdr, LibC.MSG_CMSG_CLOEXEC | (wait ? 0 : LibC.MSG_DONTWAIT));
        if (n < 0) {
            return new Received(n, NO_FDS);
        }
        Fd[] fds = collectFds();
        int flags = msghdr.get(JAVA_INT, FLAGS_OFFSET);
        if ((flags & LibC.MSG_CTRUNC) != 0) {
            Fd.closeAll(fds);
            return new Received(-LibC.EINVAL, NO_FDS);
        }
        return new Received(n, fds);
    }

    private Fd[] collectFds() {
        long controlLength = msghdr.get(JAVA_LONG, CONTROLLEN_OFFSET);
        if (controlLength < CMSG_HEADER) {
            return NO_FDS;
        }
        // One SCM_RIGHTS header is all a peer can produce with a single sendmsg of ours;
        // anything else is walked header by header so no fd escapes unclosed.
        java.util.ArrayList<Fd> out = new java.util.ArrayList<>();
        long pos = 0;
        while (pos + CMSG_HEADER <= controlLength) {
            long cmsgLength = control.get(JAVA_LONG, pos);
            int level = control.get(JAVA_INT, pos + 8);
            int type = control.get(JAVA_INT, pos + 12);
            if (cmsgLength < CMSG_HEADER || pos + cmsgLength > controlLength) {
                break;
            }
            if (level == LibC.SOL_SOCKET && type == LibC.SCM_RIGHTS) {
                long count = (cmsgLength - CMSG_HEADER) / 4;
                for (long i = 0; i < count; i++) {
                    out.add(Fd.adopt(control.get(JAVA_INT, pos + CMSG_HEADER + 4 * i)));
                }
            }
            pos += (cmsgLength + 7) & ~7L;
        }
        return out.toArray(NO_FDS);
    }

    /** Sends {@code length} bytes from the tx buffer at 0 with {@code fds} attached; bytes sent or {@code -errno}. */
    public long send(int socket, long length, int[] fds) {
        iov.set(ADDRESS, 0, txBuffer);
        iov.set(JAVA_LONG, 8, length);
        msghdr.fill((byte) 0);
        msghdr.set(ADDRESS, IOV_OFFSET, iov);
        msghdr.set(JAVA_LONG, IOVLEN_OFFSET, 1L);
        if (fds != null && fds.length > 0) {
            if (fds.length > MAX_FDS) {
                return -LibC.EINVAL;
            }
            long cmsgLength = CMSG_HEADER + 4L * fds.length;
            control.set(JAVA_LONG, 0, cmsgLength);
            control.set(JAVA_INT, 8, LibC.SOL_SOCKET);
            control.set(JAVA_INT, 12, LibC.SCM_RIGHTS);
            for (int i = 0; i < fds.length; i++) {
                control.set(JAVA_INT, CMSG_HEADER + 4L * i, fds[i]);
            }
            msghdr.set(ADDRESS, CONTROL_OFFSET, control);
            msghdr.set(JAVA_LONG, CONTROLLEN_OFFSET, (cmsgLength + 7) & ~7L);
        }
        return LibC.sendmsg(socket, msghdr, LibC.MSG_NOSIGNAL);
    }

    @Override
    public void close() {
        arena.close();
    }
}
