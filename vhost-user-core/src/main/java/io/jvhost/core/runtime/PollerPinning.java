package io.jvhost.core.runtime;

import io.jvhost.core.sys.CpuAffinity;
import io.jvhost.core.sys.NativeException;

import java.util.BitSet;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * CPU pinning of pollers ({@code --poller-cpus}), as DPDK pins lcores: a pinned poller runs on its
 * CPU alone, and every other thread of the process is kept off the CPUs pinned so far. The pinned
 * CPUs and thread ids are process-wide, so a second pinned poller does not move the first one back;
 * they live here rather than in {@link Poller} because they are state of the process, not of a poller.
 */
final class PollerPinning {
    private static final Logger LOG = LoggerFactory.getLogger(PollerPinning.class);
    private static final BitSet PINNED_CPUS = new BitSet();
    private static final Set<Integer> PINNED_THREADS = ConcurrentHashMap.newKeySet();

    private PollerPinning() {
    }

    /**
     * Runs the calling thread (poller {@code name}) on {@code cpu} alone and moves every other thread
     * of the process (but other pinned pollers) off the pinned CPUs. A failure is logged; the poller
     * runs unpinned. The poller's own thread, at its start.
     */
    static void pin(String name, int cpu) {
        try {
            int tid = CpuAffinity.currentThreadId();
            PINNED_THREADS.add(tid);
            BitSet pinned;
            synchronized (PINNED_CPUS) {
                PINNED_CPUS.set(cpu);
                pinned = (BitSet) PINNED_CPUS.clone();
            }
            BitSet mine = new BitSet();
            mine.set(cpu);
            CpuAffinity.set(0, mine);
            int moved = CpuAffinity.keepOthersOff(pinned, PINNED_THREADS);
            LOG.info("{}: pinned to CPU {} (thread {}); {} other threads kept off CPUs {}", name, cpu, tid, moved, pinned);
        } catch (NativeException | RuntimeException e) {
            LOG.warn("{}: cannot pin to CPU {}: {}; running unpinned", name, cpu, e.getMessage());
        }
    }
}
