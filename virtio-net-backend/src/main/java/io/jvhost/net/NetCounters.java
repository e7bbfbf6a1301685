package io.jvhost.net;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * Per queue pair counters, read anywhere (possibly slightly stale). Each is written by the pair's
 * poller alone with plain stores, except {@link #rxDropped}: frames are dropped on their way in on
 * any thread that injects, so it is only ever changed with atomic adds ({@link #addRxDropped}).
 */
public final class NetCounters {
    private static final VarHandle RX_DROPPED;

    static {
        try {
            RX_DROPPED = MethodHandles.lookup().findVarHandle(NetCounters.class, "rxDropped", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    public long rxFrames;
    public long rxBytes;
    /**
     * Frames for the guest that found no receive buffer (or one too small), or no room on their way
     * in. Written by the pair's poller and by injecting threads: only through {@link #addRxDropped}.
     */
    public volatile long rxDropped;
    public long txFrames;
    public long txBytes;
    /** Guest frames refused: shorter than a header, longer than the MTU allows. */
    public long txDropped;

    public NetCounters() {
        // Links the VarHandle call below now: its first call allocates, and the first drop may come
        // on a poller long after warm-up.
        addRxDropped(0);
    }

    /** Counts {@code frames} more dropped frames for the guest. Any thread (an atomic add). */
    public void addRxDropped(long frames) {
        long ignored = (long) RX_DROPPED.getAndAdd(this, frames); // exact type: no adaptation per call
    }

    @Override
    public String toString() {
        return "rx " + rxFrames + " frames/" + rxBytes + " B (dropped " + rxDropped + "), tx " + txFrames
                + " frames/" + txBytes + " B (dropped " + txDropped + ")";
    }
}
