package io.jvhost.core.sys;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.Set;

import io.jvhost.core.sys.LibC.Scratch;

import static io.jvhost.core.sys.LibC.SCRATCH;
import static io.jvhost.core.sys.LibC.bind;
import static io.jvhost.core.sys.LibC.ret;
import static io.jvhost.core.sys.LibC.rethrow;
import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Which CPUs threads may run on ({@code sched_setaffinity}), the way DPDK pins its lcores: a
 * poller on a CPU of its own, and the JVM's other threads (JIT compilers, GC, control) kept off it.
 * Control path only: each call allocates.
 */
public final class CpuAffinity {
    /** Bytes of the CPU mask passed to the kernel: 1024 CPUs, glibc's cpu_set_t. */
    private static final int MASK_BYTES = 128;
    private static final MethodHandle SET_MH = bind("sched_setaffinity", JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS);
    private static final MethodHandle GET_MH = bind("sched_getaffinity", JAVA_INT, JAVA_INT, JAVA_LONG, ADDRESS);
    private static final MethodHandle GETTID_MH = bind("gettid", JAVA_INT);

    private CpuAffinity() {
    }

    /** The kernel's id of the calling thread (what /proc/self/task lists). */
    public static int currentThreadId() {
        Scratch s = SCRATCH.get();
        try {
            return ret(s, (int) GETTID_MH.invokeExact(s.capture));
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    /** The CPUs thread {@code tid} (0: the calling thread) may run on. */
    public static BitSet get(int tid) throws NativeException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment mask = a.allocate(MASK_BYTES, 8);
            Scratch s = SCRATCH.get();
            int r;
            try {
                r = ret(s, (int) GET_MH.invokeExact(s.capture, tid, (long) MASK_BYTES, mask));
            } catch (Throwable t) {
                throw rethrow(t);
            }
            LibC.check(r, "sched_getaffinity " + tid);
            return BitSet.valueOf(mask.toArray(ValueLayout.JAVA_BYTE));
        }
    }

    /** Lets thread {@code tid} (0: the calling thread) run only on {@code cpus}. */
    public static void set(int tid, BitSet cpus) throws NativeException {
        if (cpus.isEmpty() || cpus.length() > MASK_BYTES * 8) {
            throw new NativeException("no CPU, or one past " + (MASK_BYTES * 8 - 1) + ": " + cpus, LibC.EINVAL);
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment mask = a.allocate(MASK_BYTES, 8);
            byte[] bits = cpus.toByteArray();
            MemorySegment.copy(bits, 0, mask, ValueLayout.JAVA_BYTE, 0, bits.length);
            Scratch s = SCRATCH.get();
            int r;
            try {
                r = ret(s, (int) SET_MH.invokeExact(s.capture, tid, (long) MASK_BYTES, mask));
            } catch (Throwable t) {
                throw rethrow(t);
            }
            LibC.check(r, "sched_setaffinity " + tid + " " + cpus);
        }
    }

    /**
     * Takes {@code cpus} away from every thread of this process except {@code keep} (thread ids):
     * they may run on what they could before, less those. A thread that could run only there is
     * left alone. Threads started later inherit their creator's mask. Returns how many were moved.
     */
    public static int keepOthersOff(BitSet cpus, Set<Integer> keep) throws NativeException {
        int moved = 0;
        try (DirectoryStream<Path> tasks = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
            for (Path task : tasks) {
                int tid = Integer.parseInt(task.getFileName().toString());
                if (keep.contains(tid)) {
                    continue;
                }
                BitSet allowed;
                try {
                    allowed = get(tid);
                } catch (NativeException e) {
                    continue; // the thread ended meanwhile
                }
                allowed.andNot(cpus);
                if (!allowed.isEmpty()) {
                    try {
                        set(tid, allowed);
                        moved++;
                    } catch (NativeException e) {
                        if (e.errno() != 3) { // ESRCH: it ended meanwhile
                            throw e;
                        }
                    }
                }
            }
        } catch (IOException e) {
            throw new NativeException("cannot list /proc/self/task: " + e.getMessage(), LibC.EINVAL);
        }
        return moved;
    }
}
