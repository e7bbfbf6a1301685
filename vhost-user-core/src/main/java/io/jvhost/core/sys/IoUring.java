package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;
import static io.jvhost.core.sys.IoUringSetup.CQE_SIZE;
import static io.jvhost.core.sys.IoUringSetup.CQO_CQES;
import static io.jvhost.core.sys.IoUringSetup.CQO_HEAD;
import static io.jvhost.core.sys.IoUringSetup.CQO_MASK;
import static io.jvhost.core.sys.IoUringSetup.CQO_OVERFLOW;
import static io.jvhost.core.sys.IoUringSetup.CQO_TAIL;
import static io.jvhost.core.sys.IoUringSetup.CQ_OFF;
import static io.jvhost.core.sys.IoUringSetup.P_CQ_ENTRIES;
import static io.jvhost.core.sys.IoUringSetup.P_SQ_ENTRIES;
import static io.jvhost.core.sys.IoUringSetup.SQE_SIZE;
import static io.jvhost.core.sys.IoUringSetup.SQO_ARRAY;
import static io.jvhost.core.sys.IoUringSetup.SQO_DROPPED;
import static io.jvhost.core.sys.IoUringSetup.SQO_FLAGS;
import static io.jvhost.core.sys.IoUringSetup.SQO_HEAD;
import static io.jvhost.core.sys.IoUringSetup.SQO_MASK;
import static io.jvhost.core.sys.IoUringSetup.SQO_TAIL;
import static io.jvhost.core.sys.IoUringSetup.SQ_OFF;
import static io.jvhost.core.sys.IoUringSetup.u32;

/**
 * One io_uring instance (Linux 5.6 or later), through the raw {@code io_uring_setup},
 * {@code io_uring_enter} and {@code io_uring_register} system calls and the rings they map.
 *
 * <p>Use: {@link #prepare} fills submission queue entries (SQEs) in the mapped ring, {@link #submit}
 * hands every prepared one to the kernel in one {@code io_uring_enter}, and the completion queue
 * is read in place: {@link #ready()} entries, each {@link #completionUserData(int)} and
 * {@link #completionResult(int)}, then {@link #consume(int)}. Nothing is allocated after
 * {@link #open}; the data-path calls return {@code -errno} instead of throwing. A registered
 * eventfd ({@link #registerEventFd}) is signalled whenever a completion is posted, so an epoll
 * loop can sleep on it.
 *
 * <p>A completion the kernel cannot post because the completion ring is full is kept by the kernel
 * (IORING_FEAT_NODROP, required here) and {@link #overflowed()} says so; {@link #flushOverflow()}
 * moves such completions into the ring once there is room. Callers that keep no more operations in
 * flight than {@link #cqEntries()} never see that.
 *
 * <p>Threading: {@link #open}, {@link #registerEventFd} and {@link #close} are control-path; every
 * other method belongs to one thread at a time (the ring's single submitter and reaper), with a
 * happens-before edge whenever that thread changes. Setting a ring up (and the process-wide probe)
 * is {@link IoUringSetup}'s.
 */
public final class IoUring implements AutoCloseable {
    // Opcodes (include/uapi/linux/io_uring.h).
    public static final int OP_NOP = 0, OP_READV = 1, OP_WRITEV = 2, OP_FSYNC = 3, OP_FALLOCATE = 17;
    /** {@code fsync_flags}: fdatasync rather than fsync. */
    public static final int FSYNC_DATASYNC = 1;
    /** {@code struct iovec}: base address, then length; 16 bytes. */
    public static final long IOVEC_SIZE = 16, IOV_BASE_OFFSET = 0, IOV_LEN_OFFSET = 8;

    private static final int ENTER_GETEVENTS = 1;
    private static final int SQ_CQ_OVERFLOW = 2;
    // struct io_uring_sqe: 64 bytes; struct io_uring_cqe: 16 bytes.
    private static final long SQE_OPCODE = 0, SQE_FLAGS = 1, SQE_IOPRIO = 2, SQE_FD = 4, SQE_OFF = 8,
            SQE_ADDR = 16, SQE_LEN = 24, SQE_OP_FLAGS = 28, SQE_USER_DATA = 32, SQE_TAIL = 40;
    private static final long CQE_USER_DATA = 0, CQE_RES = 8;

    private static final VarHandle INT_VH = JAVA_INT.varHandle();

    private final Arena arena = Arena.ofShared();
    private final Fd fd;
    /** The rings' mappings: closing it unmaps them. */
    private final Arena mappings;
    private final int sqEntries, cqEntries, sqMask, cqMask;
    private final MemorySegment ring, sqes;
    private final long sqHeadOffset, sqTailOffset, sqFlagsOffset, sqDroppedOffset, cqHeadOffset, cqTailOffset,
            cqOverflowOffset, cqesOffset;
    private final MemorySegment capture = arena.allocate(IoUringSetup.CAPTURE_LAYOUT);
    /** Our copy of the SQ tail (entries prepared) and of the CQ head (entries consumed). */
    private int sqTail, cqHead;

    IoUring(Fd fd, MemorySegment params, Arena mappings, MemorySegment ring, MemorySegment sqes) {
        this.fd = fd;
        this.mappings = mappings;
        this.sqEntries = params.get(JAVA_INT, P_SQ_ENTRIES);
        this.cqEntries = params.get(JAVA_INT, P_CQ_ENTRIES);
        this.ring = ring;
        this.sqes = sqes;
        this.sqHeadOffset = u32(params, SQ_OFF + SQO_HEAD);
        this.sqTailOffset = u32(params, SQ_OFF + SQO_TAIL);
        this.sqFlagsOffset = u32(params, SQ_OFF + SQO_FLAGS);
        this.sqDroppedOffset = u32(params, SQ_OFF + SQO_DROPPED);
        this.cqHeadOffset = u32(params, CQ_OFF + CQO_HEAD);
        this.cqTailOffset = u32(params, CQ_OFF + CQO_TAIL);
        this.cqOverflowOffset = u32(params, CQ_OFF + CQO_OVERFLOW);
        this.cqesOffset = u32(params, CQ_OFF + CQO_CQES);
        this.sqMask = ring.get(JAVA_INT, u32(params, SQ_OFF + SQO_MASK));
        this.cqMask = ring.get(JAVA_INT, u32(params, CQ_OFF + CQO_MASK));
        // The SQ array maps ring slots to SQEs: identity, set once, so SQE i is always slot i.
        long array = u32(params, SQ_OFF + SQO_ARRAY);
        for (int i = 0; i < sqEntries; i++) {
            ring.set(JAVA_INT, array + 4L * i, i);
        }
        this.sqTail = (int) INT_VH.getAcquire(ring, sqTailOffset);
        this.cqHead = (int) INT_VH.getAcquire(ring, cqHeadOffset);
    }

    /**
     * Why io_uring cannot be used here, or null when it can: probed once per process (a ring of one
     * entry is set up and closed, and the operations jvhost needs are looked up). Any thread.
     */
    public static String unavailableReason() {
        return IoUringSetup.unavailableReason();
    }

    /**
     * Sets up a ring of {@code entries} submission entries (rounded up to a power of two by the
     * kernel; twice as many completion entries) and maps it. Control path. Fails with the errno of
     * the step that failed: ENOSYS (no io_uring), EPERM (forbidden: a sysctl or seccomp), ENOMEM,
     * or EOPNOTSUPP when the kernel lacks a feature or operation jvhost needs.
     */
    public static IoUring open(int entries) throws NativeException {
        return IoUringSetup.open(entries);
    }

    /**
     * Has the kernel signal {@code eventFd} whenever it posts a completion. Control path; 0 or
     * {@code -errno}.
     */
    public int registerEventFd(int eventFd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment arg = a.allocate(JAVA_INT);
            arg.set(JAVA_INT, 0, eventFd);
            return (int) IoUringSetup.syscall(IoUringSetup.SYS_IO_URING_REGISTER, fd.get(), IoUringSetup.REGISTER_EVENTFD,
                    arg.address(), 1, 0, 0);
        }
    }

    /** Submission entries; at most this many operations can be prepared and not yet submitted. */
    public int sqEntries() {
        return sqEntries;
    }

    /** Completion entries: more operations than this in flight may overflow the completion ring. */
    public int cqEntries() {
        return cqEntries;
    }

    /** Submission entries free for {@link #prepare} now. */
    public int sqFree() {
        return sqEntries - unsubmitted();
    }

    /** Entries prepared but not yet taken by the kernel. */
    public int unsubmitted() {
        return sqTail - (int) INT_VH.getAcquire(ring, sqHeadOffset);
    }

    /**
     * Fills the next submission entry: {@code op} on {@code fd} at file {@code offset}, with
     * {@code addr} and {@code len} as the operation reads them (READV/WRITEV: iovec array address and
     * count; FALLOCATE: length and mode; FSYNC: 0 and 0), {@code opFlags} (FSYNC: {@link #FSYNC_DATASYNC})
     * and {@code userData}, which the completion carries back. Becomes visible to the kernel at the
     * next {@link #submit}. Returns false (and prepares nothing) when the submission ring is full.
     */
    public boolean prepare(int op, int fd, long offset, long addr, int len, int opFlags, long userData) {
        if (sqFree() <= 0) {
            return false;
        }
        long at = (sqTail & sqMask) * SQE_SIZE;
        MemorySegment s = sqes;
        s.set(JAVA_BYTE, at + SQE_OPCODE, (byte) op);
        s.set(JAVA_BYTE, at + SQE_FLAGS, (byte) 0);
        s.set(JAVA_SHORT, at + SQE_IOPRIO, (short) 0);
        s.set(JAVA_INT, at + SQE_FD, fd);
        s.set(JAVA_LONG, at + SQE_OFF, offset);
        s.set(JAVA_LONG, at + SQE_ADDR, addr);
        s.set(JAVA_INT, at + SQE_LEN, len);
        s.set(JAVA_INT, at + SQE_OP_FLAGS, opFlags);
        s.set(JAVA_LONG, at + SQE_USER_DATA, userData);
        s.set(JAVA_LONG, at + SQE_TAIL, 0L); // buf_index, personality, splice_fd_in
        s.set(JAVA_LONG, at + SQE_TAIL + 8, 0L); // addr3
        s.set(JAVA_LONG, at + SQE_TAIL + 16, 0L);
        sqTail++;
        return true;
    }

    /**
     * Publishes the prepared entries and hands them to the kernel ({@code io_uring_enter}); returns
     * how many it took, or {@code -errno}: EAGAIN, ENOMEM (no memory for requests now), EBUSY
     * (completions waiting in the overflow list), EINTR. Entries it did not take stay prepared and
     * go with the next call. Never blocks; allocation-free.
     */
    public int submit() {
        INT_VH.setRelease(ring, sqTailOffset, sqTail);
        int n = unsubmitted();
        return n == 0 ? 0 : enter(n, 0, 0);
    }

    /**
     * As {@link #submit}, then waits until at least {@code minComplete} completions are ready.
     * Blocks: for tests and the control path.
     */
    public int submitAndWait(int minComplete) {
        INT_VH.setRelease(ring, sqTailOffset, sqTail);
        return enter(unsubmitted(), minComplete, ENTER_GETEVENTS);
    }

    /** Whether the kernel holds completions it could not post because the completion ring was full. */
    public boolean overflowed() {
        return ((int) INT_VH.getAcquire(ring, sqFlagsOffset) & SQ_CQ_OVERFLOW) != 0;
    }

    /**
     * Moves completions the kernel kept aside (see {@link #overflowed()}) into the completion ring,
     * as far as there is room: an {@code io_uring_enter} that waits for nothing. 0 or {@code -errno}.
     */
    public int flushOverflow() {
        return enter(0, 0, ENTER_GETEVENTS);
    }

    /** Completions lost for good: 0 on every kernel with IORING_FEAT_NODROP (a counter the kernel keeps). */
    public int overflowCount() {
        return (int) INT_VH.getAcquire(ring, cqOverflowOffset);
    }

    /** Entries the kernel dropped as invalid (a bad SQ array index: never, with the identity array). */
    public int droppedSubmissions() {
        return (int) INT_VH.getAcquire(ring, sqDroppedOffset);
    }

    /** Completions ready to read (one acquire load of the kernel's tail). */
    public int ready() {
        return (int) INT_VH.getAcquire(ring, cqTailOffset) - cqHead;
    }

    /** The user data of the {@code i}-th ready completion ({@code i < ready()}). */
    public long completionUserData(int i) {
        return ring.get(JAVA_LONG, cqesOffset + ((cqHead + i) & cqMask) * CQE_SIZE + CQE_USER_DATA);
    }

    /** The result of the {@code i}-th ready completion: what the operation returned, or {@code -errno}. */
    public int completionResult(int i) {
        return ring.get(JAVA_INT, cqesOffset + ((cqHead + i) & cqMask) * CQE_SIZE + CQE_RES);
    }

    /** Hands the first {@code n} ready completions' entries back to the kernel. */
    public void consume(int n) {
        cqHead += n;
        INT_VH.setRelease(ring, cqHeadOffset, cqHead);
    }

    /**
     * The user data of the {@code i}-th entry prepared and not yet taken by the kernel ({@code i <
     * unsubmitted()}): for a caller that gives up on them (see {@link #discardUnsubmitted()}).
     */
    public long unsubmittedUserData(int i) {
        int head = (int) INT_VH.getAcquire(ring, sqHeadOffset);
        return sqes.get(JAVA_LONG, ((head + i) & sqMask) * SQE_SIZE + SQE_USER_DATA);
    }

    /**
     * Takes back every entry prepared and not yet taken by the kernel (after {@link #submit} failed
     * for good). Safe because only {@code io_uring_enter} consumes entries (no SQ polling thread).
     */
    public void discardUnsubmitted() {
        sqTail = (int) INT_VH.getAcquire(ring, sqHeadOffset);
        INT_VH.setRelease(ring, sqTailOffset, sqTail);
    }

    private int enter(int toSubmit, int minComplete, int flags) {
        try {
            // Without errno capture first: a failed io_uring_enter took no entry (it returns how many
            // it took as soon as it took one), so asking again with errno captured is safe.
            long r = (long) IoUringSetup.SYSCALL_FAST_MH.invokeExact(IoUringSetup.SYS_IO_URING_ENTER, (long) fd.get(), (long) toSubmit,
                    (long) minComplete, (long) flags, 0L, 0L);
            if (r >= 0) {
                return (int) r;
            }
            r = (long) IoUringSetup.SYSCALL_MH.invokeExact(capture, IoUringSetup.SYS_IO_URING_ENTER, (long) fd.get(), (long) toSubmit,
                    (long) minComplete, (long) flags, 0L, 0L);
            return r >= 0 ? (int) r : -(int) IoUringSetup.ERRNO_VH.get(capture, 0L);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** Unmaps the rings and closes the ring; the kernel cancels or finishes what is still in flight. Control path. */
    @Override
    public synchronized void close() {
        if (arena.scope().isAlive()) { // closed once: the arena is the last thing closed
            mappings.close();
            fd.close();
            arena.close();
        }
    }

    @Override
    public String toString() {
        return "io_uring " + fd + " (" + sqEntries + "/" + cqEntries + " entries)";
    }
}
