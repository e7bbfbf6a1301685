package io.jvhost.net;

/** Per queue pair counters; written by the pair's poller, read anywhere (possibly slightly stale). */
public final class NetCounters {
    public long rxFrames;
    public long rxBytes;
    /** Frames for the guest that found no receive buffer (or one too small). */
    public long rxDropped;
    public long txFrames;
    public long txBytes;
    /** Guest frames refused: shorter than a header, longer than the MTU allows. */
    public long txDropped;

    @Override
    public String toString() {
        return "rx " + rxFrames + " frames/" + rxBytes + " B (dropped " + rxDropped + "), tx " + txFrames
                + " frames/" + txBytes + " B (dropped " + txDropped + ")";
    }
}
