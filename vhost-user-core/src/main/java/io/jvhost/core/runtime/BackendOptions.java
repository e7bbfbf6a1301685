package io.jvhost.core.runtime;

/**
 * How a backend runs its queues: the idle mode of its pollers, optionally which queues share a
 * poller (null: the device's {@code queueSets()}), and optionally the CPU each poller is pinned to
 * ({@code pollerCpus[i]} for poller i; null, or a poller past its end: not pinned), and call
 * coalescing for every queue ({@link io.jvhost.core.ring.Interrupts#coalesce}; 0 frames: off). Or
 * every queue on a {@code shared} poller that serves other backends' queues too: then the idle mode,
 * queue sets and CPUs do not apply (the shared poller has its own).
 */
public record BackendOptions(IdleMode idleMode, int[][] queueSets, int[] pollerCpus, int coalesceFrames,
                             long coalesceUsecs, Poller shared) {
    public static final BackendOptions DEFAULT = new BackendOptions(IdleMode.ADAPTIVE, null);

    public BackendOptions(IdleMode idleMode, int[][] queueSets) {
        this(idleMode, queueSets, null);
    }

    public BackendOptions(IdleMode idleMode, int[][] queueSets, int[] pollerCpus) {
        this(idleMode, queueSets, pollerCpus, 0, 0);
    }

    public BackendOptions(IdleMode idleMode, int[][] queueSets, int[] pollerCpus, int coalesceFrames, long coalesceUsecs) {
        this(idleMode, queueSets, pollerCpus, coalesceFrames, coalesceUsecs, null);
    }

    /** Every queue on {@code shared}, a poller made with {@code Poller(name, mode, slots, cpu)} and started by its owner. */
    public static BackendOptions on(Poller shared) {
        return new BackendOptions(IdleMode.ADAPTIVE, null, null, 0, 0, shared);
    }

    /** The same, every queue on {@code shared} (call coalescing kept). */
    public BackendOptions onShared(Poller shared) {
        return new BackendOptions(idleMode, null, null, coalesceFrames, coalesceUsecs, shared);
    }

    /** The CPU poller {@code i} is pinned to, or -1. */
    public int pollerCpu(int i) {
        return pollerCpus != null && i < pollerCpus.length ? pollerCpus[i] : -1;
    }

    /** Parses a queue map such as {@code "0,1:2,3"} (colon between pollers, comma between queues). */
    public static int[][] parseQueueSets(String map) {
        String[] sets = map.split(":");
        int[][] out = new int[sets.length][];
        for (int i = 0; i < sets.length; i++) {
            String[] qs = sets[i].split(",");
            out[i] = new int[qs.length];
            for (int j = 0; j < qs.length; j++) {
                out[i][j] = Integer.parseInt(qs[j].trim());
            }
        }
        return out;
    }
}
