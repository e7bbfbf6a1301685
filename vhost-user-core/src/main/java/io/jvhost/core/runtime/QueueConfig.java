package io.jvhost.core.runtime;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;

/**
 * Everything a poller needs to run one queue, translated and checked by the control thread.
 * {@code base} is the avail index to resume at, or {@link #KEEP_BASE} to continue where the queue was.
 * {@code inflight} is the queue's slice of the INFLIGHT_SHMFD region, or null; {@code log} the
 * dirty log while migrating (null otherwise), with the used ring's guest-physical address.
 */
public record QueueConfig(int index, int size, MemorySegment desc, MemorySegment avail, MemorySegment used,
                          GuestMemory memory, int base, boolean eventIdx, boolean indirect,
                          int kickFd, int callFd, int errFd, MemorySegment inflight, DirtyLog log, long usedGpa) {
    public static final int KEEP_BASE = -1;
}
