package io.jvhost.core.ring;

import java.util.EnumMap;
import java.util.Map;

/**
 * Per-queue counters. Written only by the queue's poller thread with plain stores; readers on
 * other threads see values that are at most slightly stale, which is all metrics need.
 */
public final class QueueCounters {
    public long chains;
    public long descriptors;
    public long bytesRead;
    public long bytesWritten;
    public long notificationsSent;
    public long notificationsSuppressed;
    public long kicks;
    public long ringCorruptions;
    public long handlerExceptions;
    final long[] chainsRejected = new long[ChainError.values().length];
    /** The sum of {@link #chainsRejected}, kept as it goes: the receive path reads it per frame. */
    long rejectedTotal;

    public long chainsRejected(ChainError e) {
        return chainsRejected[e.ordinal()];
    }

    public long chainsRejected() {
        return rejectedTotal;
    }

    public Map<ChainError, Long> rejectedByError() {
        Map<ChainError, Long> m = new EnumMap<>(ChainError.class);
        for (ChainError e : ChainError.values()) {
            if (chainsRejected[e.ordinal()] != 0) {
                m.put(e, chainsRejected[e.ordinal()]);
            }
        }
        return m;
    }

    @Override
    public String toString() {
        return "chains=" + chains + " descriptors=" + descriptors + " bytesRead=" + bytesRead
                + " bytesWritten=" + bytesWritten + " notified=" + notificationsSent
                + " suppressed=" + notificationsSuppressed + " kicks=" + kicks
                + " rejected=" + rejectedByError() + " corruptions=" + ringCorruptions
                + " handlerExceptions=" + handlerExceptions;
    }
}
