package io.jvhost.net;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * Per queue pair counters, read anywhere (possibly slightly stale). Each is written by the pair's
 * poller alone with plain stores, except {@link #rxDropped}: frames are dropped on their way in on
 * any thread that injects, so it is only ever changed with atomic adds ({@link #addRxDropped}).
 */
public final class NetCounters {
    private static final VarHandle RX_DROPPED = field("rxDropped"), RX_FRAMES = field("rxFrames"),
            RX_BYTES = field("rxBytes"), TX_FRAMES = field("txFrames"), TX_BYTES = field("txBytes"),
            TX_DROPPED = field("txDropped"), TX_BAD_HEADER = field("txBadHeader");

    private static VarHandle field(String name) {
        try {
            return MethodHandles.lookup().findVarHandle(NetCounters.class, name, long.class);
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
    /** Guest frames refused for their virtio-net header: offloads not negotiated, offsets outside the frame. */
    public long txBadHeader;

    public NetCounters() {
        // Links the VarHandle call below now: its first call allocates, and the first drop may come
        // on a poller long after warm-up.
        addRxDropped(0);
    }

    /** Counts {@code frames} more dropped frames for the guest. Any thread (an atomic add). */
    public void addRxDropped(long frames) {
        long ignored = (long) RX_DROPPED.getAndAdd(this, frames); // exact type: no adaptation per call
    }

    /** The counters now, each read opaque (never torn or cached). Any thread, no lock. */
    public Snapshot snapshot() {
        return new Snapshot((long) RX_FRAMES.getOpaque(this), (long) RX_BYTES.getOpaque(this), rxDropped,
                (long) TX_FRAMES.getOpaque(this), (long) TX_BYTES.getOpaque(this), (long) TX_DROPPED.getOpaque(this),
                (long) TX_BAD_HEADER.getOpaque(this));
    }

    /** {@link NetCounters} as one reader saw them. */
    public record Snapshot(long rxFrames, long rxBytes, long rxDropped, long txFrames, long txBytes, long txDropped,
                           long txBadHeader) {}

    @Override
    public String toString() {
        return "rx " + rxFrames + " frames/" + rxBytes + " B (dropped " + rxDropped + "), tx " + txFrames
                + " frames/" + txBytes + " B (dropped " + txDropped + (txBadHeader > 0 ? ", bad header " + txBadHeader : "") + ")";
    }
}
