package io.jvhost.blk;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.LongStream;

/**
 * Block requests made by hand, each remembering how it completed: for unit tests of a store's
 * parts that live outside this package (the requests' constructor is the device's own).
 */
public final class TestRequests {
    private TestRequests() {}

    /** A request and every status it was completed with (exactly one, when all is well). */
    public record Recorded(BlockRequest request, List<Integer> statuses) {}

    /** A READ, WRITE or FLUSH of {@code length} bytes at {@code offset}; {@code durable}: the guest wants it on stable storage. */
    public static Recorded of(BlockRequest.Type type, long offset, long length, boolean durable) {
        List<Integer> statuses = new ArrayList<>();
        BlockRequest r = new BlockRequest(0, 1, 4, done -> statuses.add(done.completedStatus));
        r.type = type;
        r.offset = offset;
        r.length = length;
        r.durable = durable;
        return new Recorded(r, statuses);
    }

    /**
     * A READ or WRITE whose data lies in guest segments of {@code lengths} bytes, one after the
     * other from byte 0 of {@code memory} (a length of 0: an empty segment).
     */
    public static Recorded inSegments(BlockRequest.Type type, MemorySegment memory, long... lengths) {
        Recorded rec = of(type, 0, LongStream.of(lengths).sum(), false);
        long at = 0;
        for (long length : lengths) {
            rec.request().addSegment(memory, at, length, at);
            at += length;
        }
        return rec;
    }

    /** A DISCARD or WRITE_ZEROES of the ranges {@code offsetsAndLengths} (offset, length, offset, length...). */
    public static Recorded ranges(BlockRequest.Type type, boolean unmap, long... offsetsAndLengths) {
        Recorded rec = of(type, 0, 0, false);
        BlockRequest r = rec.request();
        r.unmap = unmap;
        for (int i = 0; i < offsetsAndLengths.length; i += 2) {
            r.rangeOffsets[r.rangeCount] = offsetsAndLengths[i];
            r.rangeLengths[r.rangeCount++] = offsetsAndLengths[i + 1];
        }
        return rec;
    }
}
