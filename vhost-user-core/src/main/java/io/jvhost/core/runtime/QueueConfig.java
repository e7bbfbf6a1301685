package io.jvhost.core.runtime;

import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;

/**
 * Everything a poller needs to run one queue, translated and checked by the control thread.
 * {@code base} is the avail index to resume at, or {@link #KEEP_BASE} to continue where the queue was.
 */
public record QueueConfig(int index, int size, MemorySegment desc, MemorySegment avail, MemorySegment used,
                          GuestMemory memory, int base, boolean eventIdx, boolean indirect,
                          int kickFd, int callFd, int errFd) {
    public static final int KEEP_BASE = -1;
}
