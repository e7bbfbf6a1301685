package io.jvhost.core.sys;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.nio.file.Files;
import java.nio.file.Path;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * Setting up an {@link IoUring}, the control-path half: the raw {@code syscall} handles,
 * {@code io_uring_setup} with the features and operations jvhost needs checked, the two mmaps of
 * the rings, and the once-per-process probe behind {@link IoUring#unavailableReason()}. Kept apart
 * from {@link IoUring}, which is the running ring (submission and completion, allocation-free), so
 * the data path reads without the setup's error handling around it.
 */
final class IoUringSetup {
    static final long SYS_IO_URING_SETUP = 425, SYS_IO_URING_ENTER = 426, SYS_IO_URING_REGISTER = 427;
    private static final int FEAT_SINGLE_MMAP = 1, FEAT_NODROP = 2;
    static final int REGISTER_EVENTFD = 4;
    private static final int REGISTER_PROBE = 8;
    private static final long OFF_SQ_RING = 0, OFF_SQES = 0x10000000L;
    private static final int MAP_POPULATE = 0x8000;
    private static final int PROBE_OP_SUPPORTED = 1;
    private static final int[] REQUIRED_OPS = {IoUring.OP_NOP, IoUring.OP_READV, IoUring.OP_WRITEV, IoUring.OP_FSYNC,
            IoUring.OP_FALLOCATE};

    // struct io_uring_params: 120 bytes; io_sqring_offsets at 40, io_cqring_offsets at 80.
    static final long PARAMS_SIZE = 120, P_SQ_ENTRIES = 0, P_CQ_ENTRIES = 4, P_FEATURES = 20;
    static final long SQ_OFF = 40, SQO_HEAD = 0, SQO_TAIL = 4, SQO_MASK = 8, SQO_FLAGS = 16, SQO_DROPPED = 20, SQO_ARRAY = 24;
    static final long CQ_OFF = 80, CQO_HEAD = 0, CQO_TAIL = 4, CQO_MASK = 8, CQO_OVERFLOW = 16, CQO_CQES = 20;
    static final long SQE_SIZE = 64, CQE_SIZE = 16;

    private static final Linker LINKER = Linker.nativeLinker();
    static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    static final VarHandle ERRNO_VH = CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final MemorySegment SYSCALL = LINKER.defaultLookup().find("syscall").orElseThrow();
    // long syscall(long number, ...): every argument passed as a long (the kernel takes the low bits).
    private static final FunctionDescriptor SYSCALL_6 = FunctionDescriptor.of(JAVA_LONG, JAVA_LONG,
            JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG);
    /** syscall without errno capture: the data path (see {@link IoUring}'s enter). */
    static final MethodHandle SYSCALL_FAST_MH =
            LINKER.downcallHandle(SYSCALL, SYSCALL_6, Linker.Option.firstVariadicArg(1));
    static final MethodHandle SYSCALL_MH = LINKER.downcallHandle(SYSCALL, SYSCALL_6,
            Linker.Option.firstVariadicArg(1), Linker.Option.captureCallState("errno"));

    private static volatile String unavailable;
    private static volatile boolean probed;

    private IoUringSetup() {
    }

    static long u32(MemorySegment s, long offset) {
        return Integer.toUnsignedLong(s.get(JAVA_INT, offset));
    }

    /** See {@link IoUring#unavailableReason()}. */
    static String unavailableReason() {
        if (!probed) {
            synchronized (IoUringSetup.class) {
                if (!probed) {
                    unavailable = probe();
                    probed = true;
                }
            }
        }
        return unavailable;
    }

    private static String probe() {
        try (IoUring r = open(1)) {
            return null;
        } catch (NativeException e) {
            String sysctl = "";
            try {
                Path p = Path.of("/proc/sys/kernel/io_uring_disabled");
                if (Files.exists(p)) {
                    String v = Files.readString(p).trim();
                    if (!v.equals("0")) {
                        sysctl = " (kernel.io_uring_disabled = " + v + ")";
                    }
                }
            } catch (IOException | RuntimeException ignored) {
                // the reason without the sysctl's value
            }
            return e.getMessage() + sysctl;
        } catch (RuntimeException e) {
            return e.toString();
        }
    }

    /** See {@link IoUring#open(int)}. */
    static IoUring open(int entries) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment params = a.allocate(PARAMS_SIZE, 8);
            long r = syscall(SYS_IO_URING_SETUP, entries, params.address(), 0, 0, 0, 0);
            if (r < 0) {
                throw new NativeException("io_uring_setup", (int) -r);
            }
            Fd fd = Fd.adopt((int) r);
            try {
                int features = params.get(JAVA_INT, P_FEATURES);
                if ((features & FEAT_SINGLE_MMAP) == 0 || (features & FEAT_NODROP) == 0) {
                    throw new NativeException("io_uring features single-mmap and no-drop (Linux 5.5)", LibC.EOPNOTSUPP);
                }
                checkOps(fd.get(), a);
                int sq = params.get(JAVA_INT, P_SQ_ENTRIES), cq = params.get(JAVA_INT, P_CQ_ENTRIES);
                long ringBytes = Math.max(u32(params, SQ_OFF + SQO_ARRAY) + 4L * sq, u32(params, CQ_OFF + CQO_CQES) + CQE_SIZE * cq);
                long sqeBytes = SQE_SIZE * sq;
                Arena mappings = Arena.ofShared();
                long ringAt = LibC.mmap(ringBytes, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED | MAP_POPULATE, fd.get(), OFF_SQ_RING);
                if (ringAt < 0) {
                    mappings.close();
                    throw new NativeException("mmap of the io_uring rings", (int) -ringAt);
                }
                MemorySegment ring = LibC.segmentAt(ringAt, ringBytes, mappings, () -> LibC.munmap(ringAt, ringBytes));
                long sqesAt = LibC.mmap(sqeBytes, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED | MAP_POPULATE, fd.get(), OFF_SQES);
                if (sqesAt < 0) {
                    mappings.close();
                    throw new NativeException("mmap of the io_uring submission entries", (int) -sqesAt);
                }
                MemorySegment sqes = LibC.segmentAt(sqesAt, sqeBytes, mappings, () -> LibC.munmap(sqesAt, sqeBytes));
                return new IoUring(fd, params, mappings, ring, sqes);
            } catch (NativeException | RuntimeException e) {
                fd.close();
                throw e;
            }
        }
    }

    /** Fails unless the kernel supports every operation in {@link #REQUIRED_OPS} (IORING_REGISTER_PROBE, Linux 5.6). */
    private static void checkOps(int fd, Arena a) throws NativeException {
        int ops = 64;
        MemorySegment probe = a.allocate(16 + 8L * ops, 8); // header, then {u8 op, u8 resv, u16 flags, u32 resv2} each
        long r = syscall(SYS_IO_URING_REGISTER, fd, REGISTER_PROBE, probe.address(), ops, 0, 0);
        if (r < 0) {
            throw new NativeException("io_uring operation probe (Linux 5.6)", (int) -r);
        }
        int opsLen = Byte.toUnsignedInt(probe.get(JAVA_BYTE, 1));
        for (int op : REQUIRED_OPS) {
            if (op >= opsLen || (probe.get(JAVA_SHORT, 16 + 8L * op + 2) & PROBE_OP_SUPPORTED) == 0) {
                throw new NativeException("io_uring operation " + op, LibC.EOPNOTSUPP);
            }
        }
    }

    /** A control-path system call; the result or {@code -errno}. */
    static long syscall(long number, long a, long b, long c, long d, long e, long f) {
        try (Arena a2 = Arena.ofConfined()) {
            MemorySegment cap = a2.allocate(CAPTURE_LAYOUT);
            long r = (long) SYSCALL_MH.invokeExact(cap, number, a, b, c, d, e, f);
            return r >= 0 ? r : -(int) ERRNO_VH.get(cap, 0L);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }
}
