package io.jvhost.core.runtime;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.ring.VirtQueue;

import java.lang.foreign.MemorySegment;

/**
 * Everything a poller needs to run one queue, translated and checked by the control thread: the
 * three areas SET_VRING_ADDR names (split: descriptor table, avail ring, used ring; packed:
 * descriptor ring, driver and device event suppression structures), the {@link VirtQueue}
 * {@code options} from the negotiated features (layout, EVENT_IDX, INDIRECT_DESC, IN_ORDER), and
 * {@code base}, what SET_VRING_BASE set (see {@link io.jvhost.core.ring.QueuePosition#base()}), or {@link #KEEP_BASE} to
 * continue where the queue was. {@code inflight} is the queue's slice of the INFLIGHT_SHMFD
 * region, or null; {@code log} the dirty log while migrating (null otherwise), with the
 * guest-physical addresses of the descriptor area and of the device area.
 */
public record QueueConfig(int index, int size, MemorySegment desc, MemorySegment driverArea, MemorySegment deviceArea,
                          GuestMemory memory, long base, int options, int kickFd, int callFd, int errFd,
                          MemorySegment inflight, DirtyLog log, long descGpa, long deviceAreaGpa) {
    public static final long KEEP_BASE = -1;

    /** Points {@code q} at this configuration. Poller thread, with the queue detached. */
    void configure(VirtQueue q) {
        long b = base == KEEP_BASE ? q.position().base() : base;
        q.inflight(inflight);
        q.dirtyLog(log, descGpa, deviceAreaGpa);
        q.configure(size, desc, driverArea, deviceArea, memory, b, options, errFd);
    }
}
