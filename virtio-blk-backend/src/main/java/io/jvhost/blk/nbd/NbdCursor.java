package io.jvhost.blk.nbd;

import io.jvhost.blk.BlockRequest;

import java.lang.foreign.MemorySegment;

/**
 * Where a READ or WRITE command's data is in guest memory: a command is a piece of its request,
 * whose data is spread over several guest segments, so its bytes start some way into one of them
 * and may run over several. The cursor walks them piece by piece (one piece: what lies in one
 * segment); both paths use it to send a WRITE's data and to place a READ's as it arrives. Reused,
 * allocates nothing; one thread.
 */
final class NbdCursor {
    private BlockRequest request;
    /** The current segment, the bytes of it already behind, and the command's bytes still ahead. */
    int segment;
    long skip;
    long left;

    /** At the first byte of {@code op}'s data. */
    void start(NbdOp op) {
        BlockRequest r = op.job.request;
        long at = op.dataOffset;
        int s = 0;
        while (s < r.segmentCount() && at >= r.segmentLength(s)) {
            at -= r.segmentLength(s);
            s++;
        }
        request = r;
        segment = s;
        skip = at;
        left = op.length;
    }

    /** Where {@code other} is (to look ahead without moving it). */
    void copyOf(NbdCursor other) {
        request = other.request;
        segment = other.segment;
        skip = other.skip;
        left = other.left;
    }

    /** Whether bytes are ahead (in segments the request has). */
    boolean more() {
        return left > 0 && segment < request.segmentCount();
    }

    /** The bytes of the current piece: what is ahead in the current segment. */
    long room() {
        return Math.min(request.segmentLength(segment) - skip, left);
    }

    /** The current segment's memory, and where in it the next byte is. */
    MemorySegment memory() {
        return request.segmentMemory(segment);
    }

    long offset() {
        return request.segmentOffset(segment) + skip;
    }

    /** {@code n} bytes (no more than {@link #room}) are done; an empty segment is no piece. */
    void moved(long n) {
        left -= n;
        skip += n;
        while (segment < request.segmentCount() && skip == request.segmentLength(segment)) {
            segment++;
            skip = 0;
        }
    }
}
