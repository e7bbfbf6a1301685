package io.jvhost.blk.nbd;

import io.jvhost.blk.BlockRequest;
import io.jvhost.blk.BlockRequest.Type;
import io.jvhost.blk.TestRequests;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Where a command's data lies in its request's guest segments, piece by piece. */
class NbdCursorTest {
    private final MemorySegment memory = Arena.ofAuto().allocate(4096);
    /** Segments of 100, 0 (empty), 50 and 200 bytes, one after the other in {@link #memory}. */
    private final BlockRequest request = TestRequests.inSegments(Type.WRITE, memory, 100, 0, 50, 200).request();

    /** A piece: where in {@link #memory} it starts, and how long it is. */
    private record Piece(long offset, long length) {}

    private NbdCursor at(long dataOffset, int length) {
        NbdOp op = new NbdOp(0);
        op.job = new NbdJob();
        op.job.request = request;
        op.dataOffset = dataOffset;
        op.length = length;
        NbdCursor c = new NbdCursor();
        c.start(op);
        return c;
    }

    private List<Piece> walk(NbdCursor c) {
        List<Piece> pieces = new ArrayList<>();
        while (c.more()) {
            long n = c.room();
            assertSame(memory, c.memory(), "the piece lies in its segment's memory");
            pieces.add(new Piece(c.offset(), n));
            c.moved(n);
        }
        return pieces;
    }

    @Test
    void shouldWalkACommandThatStartsInsideOneSegmentOverTheNextOnesSkippingTheEmptyOne() {
        assertEquals(List.of(new Piece(90, 10), new Piece(100, 50), new Piece(150, 40)), walk(at(90, 100)));
    }

    @Test
    void shouldStartACommandThatBeginsAtASegmentBoundaryInTheNextSegmentWithBytes() {
        assertEquals(List.of(new Piece(100, 50), new Piece(150, 10)), walk(at(100, 60)));
        assertEquals(List.of(new Piece(150, 200)), walk(at(150, 200)));
    }

    @Test
    void shouldStopWhereTheRequestsSegmentsEndEvenIfTheCommandAsksForMore() {
        NbdCursor c = at(300, 100); // 50 bytes are left in the last segment

        assertEquals(List.of(new Piece(300, 50)), walk(c));
        assertFalse(c.more());
        assertEquals(50, c.left, "what the command still wanted");
    }

    @Test
    void shouldMovePartWayThroughAPieceAndGoOnFromThere() {
        NbdCursor c = at(0, 120);

        c.moved(30);

        assertEquals(30, c.offset());
        assertEquals(70, c.room());
        assertEquals(List.of(new Piece(30, 70), new Piece(100, 20)), walk(c));
    }

    @Test
    void shouldLookAheadOnACopyWithoutMovingTheOriginal() {
        NbdCursor c = at(95, 20);
        NbdCursor ahead = new NbdCursor();
        ahead.copyOf(c);

        assertEquals(List.of(new Piece(95, 5), new Piece(100, 15)), walk(ahead));

        assertTrue(c.more());
        assertEquals(95, c.offset());
        assertEquals(5, c.room());
    }
}
