package io.jvhost.core.runtime;

/**
 * How a backend runs its queues: the idle mode of its pollers and, optionally, which queues share
 * a poller (null: the device's {@code queueSets()}); or every queue on a {@code shared} poller that
 * serves other backends' queues too (then the other two do not apply: the shared poller has its own
 * idle mode).
 */
public record BackendOptions(IdleMode idleMode, int[][] queueSets, Poller shared) {
    public static final BackendOptions DEFAULT = new BackendOptions(IdleMode.EVENT, null);

    public BackendOptions(IdleMode idleMode, int[][] queueSets) {
        this(idleMode, queueSets, null);
    }

    /** Every queue on {@code shared}, a poller made with {@code Poller(name, mode, slots)} and started by its owner. */
    public static BackendOptions on(Poller shared) {
        return new BackendOptions(IdleMode.EVENT, null, shared);
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
