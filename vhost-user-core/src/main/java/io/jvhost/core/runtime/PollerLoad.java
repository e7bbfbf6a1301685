package io.jvhost.core.runtime;

import io.jvhost.core.metrics.MetricSink;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.function.LongSupplier;

/**
 * Where a poller's time goes, as SPDK's reactors count busy and idle TSC: a busy spell runs from
 * the first duty cycle that moves traffic (chains or frames) to the next one that finds nothing,
 * and an idle spell from there, through the spinning, yielding or sleeping, to the next cycle
 * that moves traffic. A busy-polling poller's CPU time is always its whole wall time; its busy
 * time per packet is what serving a packet costs, and its idle share says whether it waits for its
 * peer (a frontend that cannot keep up) rather than the other way round.
 *
 * <p>The clock is read only while idle (when an idle spell begins and after each idling), never
 * in a busy spell: a saturated poller pays nothing for it. Readers add the open spell so far, so a
 * poller that never idles still shows its busy time. Written by the poller thread only, published
 * as a sequence lock (a writer that never waits, readers that retry), read by any thread.
 */
public final class PollerLoad {
    private static final VarHandle VERSION, BUSY, IDLE, MARK, IN_BUSY_SPELL;

    static {
        try {
            MethodHandles.Lookup l = MethodHandles.lookup();
            VERSION = l.findVarHandle(PollerLoad.class, "version", long.class);
            BUSY = l.findVarHandle(PollerLoad.class, "busy", long.class);
            IDLE = l.findVarHandle(PollerLoad.class, "idle", long.class);
            MARK = l.findVarHandle(PollerLoad.class, "mark", long.class);
            IN_BUSY_SPELL = l.findVarHandle(PollerLoad.class, "inBusySpell", boolean.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final LongSupplier clock;
    /** Odd while the poller updates the fields below. */
    private long version;
    /** Nanoseconds of the spells that ended. */
    private long busy, idle;
    /** When the open spell began; 0 before {@link #start}. */
    private long mark;
    private boolean inBusySpell;

    PollerLoad() {
        this(System::nanoTime);
    }

    /** With {@code clock} for the time (nanoseconds, as {@link System#nanoTime()}); tests give their own. */
    PollerLoad(LongSupplier clock) {
        this.clock = clock;
    }

    /** The poller's first duty cycle begins now, in an idle spell. Poller thread. */
    void start() {
        publish(0, 0, clock.getAsLong(), false);
    }

    /** A duty cycle moved traffic: a busy spell begins at the end of the last idling, or goes on. Poller thread. */
    void moved() {
        if (!inBusySpell) {
            publish(busy, idle, mark, true);
        }
    }

    /** A duty cycle found nothing and the poller is about to idle: a busy spell ends now. Poller thread. */
    void idleBegins() {
        if (inBusySpell) {
            long now = clock.getAsLong();
            publish(busy + now - mark, idle, now, false);
        }
    }

    /** The poller stopped idling (spun, yielded or woke up) and starts a duty cycle. Poller thread. */
    void idleEnded() {
        long now = clock.getAsLong();
        publish(busy, idle + now - mark, now, false);
    }

    private void publish(long busy, long idle, long mark, boolean inBusySpell) {
        long v = version;
        VERSION.setOpaque(this, v + 1);
        VarHandle.storeStoreFence();
        BUSY.setOpaque(this, busy);
        IDLE.setOpaque(this, idle);
        MARK.setOpaque(this, mark);
        IN_BUSY_SPELL.setOpaque(this, inBusySpell);
        VERSION.setRelease(this, v + 2);
    }

    /** Nanoseconds in busy spells so far, the open one included. Any thread. */
    public long busyNanos() {
        return read(true);
    }

    /** Nanoseconds in idle spells so far, the open one included. Any thread. */
    public long idleNanos() {
        return read(false);
    }

    /**
     * Reports both times to {@code sink} as {@code jvhost_device_poller_busy_seconds} and
     * {@code jvhost_device_poller_idle_seconds}, labelled {@code poller=name}: under a device for its
     * own pollers, under a {@code poller} pseudo-device for a shared one.
     */
    public void report(MetricSink sink, String name) {
        sink.timeCounter("jvhost_device_poller_busy_seconds", "Time the poller spent in duty cycles that moved"
                + " traffic (busy polling: its share says how loaded the poller is).", "poller", name, busyNanos());
        sink.timeCounter("jvhost_device_poller_idle_seconds", "Time the poller found nothing to do: spinning,"
                + " yielding or asleep.", "poller", name, idleNanos());
    }

    private long read(boolean busySpells) {
        while (true) {
            long v = (long) VERSION.getAcquire(this);
            long b = (long) BUSY.getOpaque(this), i = (long) IDLE.getOpaque(this), m = (long) MARK.getOpaque(this);
            boolean inBusy = (boolean) IN_BUSY_SPELL.getOpaque(this);
            VarHandle.loadLoadFence();
            if ((v & 1) == 0 && v == (long) VERSION.getOpaque(this)) {
                long open = m == 0 ? 0 : clock.getAsLong() - m;
                return busySpells ? b + (inBusy ? open : 0) : i + (inBusy ? 0 : open);
            }
            Thread.onSpinWait();
        }
    }
}
