package io.jvhost.core.ring;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.EnumMap;
import java.util.Map;

/**
 * Per-queue counters. Written only by the queue's poller thread with plain stores; readers on
 * other threads use {@link #snapshot()}, whose opaque reads are never torn or cached and at most
 * slightly stale, which is all metrics need.
 */
public final class QueueCounters {
    private static final VarHandle CHAINS = field("chains"), DESCRIPTORS = field("descriptors"),
            BYTES_READ = field("bytesRead"), BYTES_WRITTEN = field("bytesWritten"),
            NOTIFICATIONS_SENT = field("notificationsSent"), NOTIFICATIONS_SUPPRESSED = field("notificationsSuppressed"),
            NOTIFICATIONS_COALESCED = field("notificationsCoalesced"),
            KICKS = field("kicks"), RING_CORRUPTIONS = field("ringCorruptions"), HANDLER_EXCEPTIONS = field("handlerExceptions");
    private static final VarHandle LONGS = MethodHandles.arrayElementVarHandle(long[].class);

    /** Chains taken with {@code next()} (less those given back with {@code rewind}). */
    public long chains;
    public long descriptors;
    /** Device-readable bytes of the chains taken (driver to device). */
    public long bytesRead;
    /** Used lengths completed (device to driver). */
    public long bytesWritten;
    public long notificationsSent;
    public long notificationsSuppressed;
    /** Interrupts the driver wanted that were held back to go out with a later one (call coalescing). */
    public long notificationsCoalesced;
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

    /** The counters now, each read opaque. Any thread, no lock. */
    public Snapshot snapshot() {
        long[] rejected = new long[chainsRejected.length];
        for (int i = 0; i < rejected.length; i++) {
            rejected[i] = (long) LONGS.getOpaque(chainsRejected, i);
        }
        return new Snapshot((long) CHAINS.getOpaque(this), (long) DESCRIPTORS.getOpaque(this),
                (long) BYTES_READ.getOpaque(this), (long) BYTES_WRITTEN.getOpaque(this),
                (long) NOTIFICATIONS_SENT.getOpaque(this), (long) NOTIFICATIONS_SUPPRESSED.getOpaque(this),
                (long) KICKS.getOpaque(this), (long) RING_CORRUPTIONS.getOpaque(this),
                (long) HANDLER_EXCEPTIONS.getOpaque(this), (long) NOTIFICATIONS_COALESCED.getOpaque(this), rejected);
    }

    /** {@link QueueCounters} as one reader saw them; {@code chainsRejected} indexed by {@link ChainError#ordinal()}. */
    public record Snapshot(long chains, long descriptors, long bytesRead, long bytesWritten, long notificationsSent,
                           long notificationsSuppressed, long kicks, long ringCorruptions, long handlerExceptions,
                           long notificationsCoalesced, long[] chainsRejected) {
        public long chainsRejected(ChainError e) {
            return chainsRejected[e.ordinal()];
        }
    }

    private static VarHandle field(String name) {
        try {
            return MethodHandles.lookup().findVarHandle(QueueCounters.class, name, long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    @Override
    public String toString() {
        return "chains=" + chains + " descriptors=" + descriptors + " bytesRead=" + bytesRead
                + " bytesWritten=" + bytesWritten + " notified=" + notificationsSent
                + " suppressed=" + notificationsSuppressed + " coalesced=" + notificationsCoalesced + " kicks=" + kicks
                + " rejected=" + rejectedByError() + " corruptions=" + ringCorruptions
                + " handlerExceptions=" + handlerExceptions;
    }
}
