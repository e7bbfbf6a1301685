package io.jvhost.core.ring;

import io.jvhost.core.memory.GuestMemory;

import java.lang.foreign.MemorySegment;

/**
 * Dirty-log observation for tests: tells the installed {@link GuestWriteObserver} every guest
 * range a queue may write while migrating, found from the chains and ring mappings themselves
 * rather than from the dirty log's own marking (which is what the observer checks). Apart from
 * {@link VirtQueue} because it is test support the data path calls only while a dirty log is in
 * force. Any thread.
 */
final class GuestWrites {
    /** Null unless a test installs one. */
    private static volatile GuestWriteObserver observer;

    private GuestWrites() {
    }

    static void observer(GuestWriteObserver o) {
        observer = o;
    }

    /** The writable buffers of chain {@code c}. */
    static void chain(DescriptorChain c) {
        GuestWriteObserver o = observer;
        if (o != null) {
            for (int i = c.readableCount(); i < c.count(); i++) {
                if (c.region(i) >= 0) {
                    o.mayWrite(c.gpa(i), Integer.toUnsignedLong(c.length(i)));
                }
            }
        }
    }

    /**
     * The ring areas the device writes: the split ring's used ring; on a packed ring, the
     * descriptors it marks used in the ring itself and the device event suppression area.
     */
    static void ringAreas(boolean packed, MemorySegment desc, MemorySegment deviceArea, GuestMemory memory) {
        ringArea(deviceArea, memory);
        if (packed) {
            ringArea(desc, memory);
        }
    }

    /** A ring area the device writes, located from its mapping (not from the address the dirty log uses). */
    private static void ringArea(MemorySegment area, GuestMemory memory) {
        GuestWriteObserver o = observer;
        for (int r = 0; o != null && r < memory.regionCount(); r++) {
            MemorySegment region = memory.segment(r);
            long at = area.address() - region.address();
            if (at >= 0 && at + area.byteSize() <= region.byteSize()) {
                o.mayWrite(memory.gpaBase(r) + at, area.byteSize());
                return;
            }
        }
    }
}
