package io.jvhost.blk.nbd;

import io.jvhost.blk.BlockRequest;
import io.jvhost.blk.BlockRequest.Type;
import io.jvhost.blk.TestRequests;
import io.jvhost.blk.TestRequests.Recorded;

import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.slf4j.LoggerFactory;

import static io.jvhost.blk.nbd.Nbd.CMD_FLAG_FUA;
import static io.jvhost.blk.nbd.Nbd.CMD_FLAG_NO_HOLE;
import static io.jvhost.blk.nbd.Nbd.CMD_FLUSH;
import static io.jvhost.blk.nbd.Nbd.CMD_READ;
import static io.jvhost.blk.nbd.Nbd.CMD_TRIM;
import static io.jvhost.blk.nbd.Nbd.CMD_WRITE;
import static io.jvhost.blk.nbd.Nbd.CMD_WRITE_ZEROES;
import static io.jvhost.blk.nbd.Nbd.EIO;
import static io.jvhost.blk.nbd.Nbd.ENOTSUP;
import static io.jvhost.blk.nbd.Nbd.FLAG_SEND_FLUSH;
import static io.jvhost.blk.nbd.Nbd.FLAG_SEND_FUA;
import static io.jvhost.blk.nbd.Nbd.FLAG_SEND_TRIM;
import static io.jvhost.blk.nbd.Nbd.FLAG_SEND_WRITE_ZEROES;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The commands a request becomes and how their replies complete it: the logic both NBD paths share. */
class NbdOpsTest {
    private static final int ALL = FLAG_SEND_FLUSH | FLAG_SEND_FUA | FLAG_SEND_TRIM | FLAG_SEND_WRITE_ZEROES;
    private static final long GIB = 1L << 30;

    private final NbdOps ops = new NbdOps(LoggerFactory.getLogger(NbdOpsTest.class), "test", 2);

    /** A command as it would go on the wire: what, flags, where, how long, where in the request's data. */
    private record Command(int command, int flags, long diskOffset, int length, long dataOffset) {}

    /** Takes every waiting command off the FIFO, oldest first, marking each sent. */
    private List<NbdOp> send() {
        List<NbdOp> sent = new ArrayList<>();
        for (NbdOp op = ops.nextWaiting(); op != null; op = ops.nextWaiting()) {
            ops.dequeue();
            op.state = NbdOp.SENT;
            sent.add(op);
        }
        return sent;
    }

    private static List<Command> commands(List<NbdOp> sent) {
        return sent.stream().map(o -> new Command(o.command, o.flags, o.diskOffset, o.length, o.dataOffset)).toList();
    }

    @Test
    void shouldSplitAReadIntoCommandsOfAtMostTheChunkInOrder() {
        Recorded r = TestRequests.of(Type.READ, 4096, 10_000, false);

        ops.start(r.request(), ALL, 4096);

        assertEquals(List.of(new Command(CMD_READ, 0, 4096, 4096, 0), new Command(CMD_READ, 0, 8192, 4096, 4096),
                new Command(CMD_READ, 0, 12288, 1808, 8192)), commands(send()));
        assertTrue(r.statuses().isEmpty(), "not complete before its commands are");
    }

    @Test
    void shouldCompleteARequestOnceWithItsLastCommand() {
        Recorded r = TestRequests.of(Type.READ, 0, 8192, false);
        ops.start(r.request(), ALL, 4096);
        List<NbdOp> sent = send();

        ops.done(sent.get(1), 0, true);
        assertTrue(r.statuses().isEmpty());
        ops.done(sent.get(0), 0, true);

        assertEquals(List.of(BlockRequest.STATUS_OK), r.statuses());
        assertEquals(0, ops.live());
    }

    @Test
    void shouldSendADurableWriteWithFuaWhenTheServerTakesIt() {
        ops.start(TestRequests.of(Type.WRITE, 0, 512, true).request(), ALL, 4096);

        assertEquals(List.of(new Command(CMD_WRITE, CMD_FLAG_FUA, 0, 512, 0)), commands(send()));
    }

    @Test
    void shouldFlushAfterADurableWriteWhenTheServerHasFlushButNoFua() {
        Recorded r = TestRequests.of(Type.WRITE, 0, 512, true);
        ops.start(r.request(), FLAG_SEND_FLUSH, 4096);
        NbdOp write = send().getFirst();
        assertEquals(0, write.flags);

        ops.done(write, 0, true);
        List<NbdOp> flush = send();

        assertEquals(List.of(new Command(CMD_FLUSH, 0, 0, 0, 0)), commands(flush));
        assertTrue(r.statuses().isEmpty(), "the write is not acknowledged before its flush");
        ops.done(flush.getFirst(), 0, true);
        assertEquals(List.of(BlockRequest.STATUS_OK), r.statuses());
    }

    @Test
    void shouldNotFlushAfterAWriteThatFailedOrWhenTheOwnerMayNotSendAnyMore() {
        Recorded failed = TestRequests.of(Type.WRITE, 0, 512, true);
        Recorded closing = TestRequests.of(Type.WRITE, 4096, 512, true);
        ops.start(failed.request(), FLAG_SEND_FLUSH, 4096);
        ops.start(closing.request(), FLAG_SEND_FLUSH, 4096);
        List<NbdOp> writes = send();

        ops.done(writes.get(0), EIO, true);
        ops.done(writes.get(1), 0, false);

        assertNull(ops.nextWaiting());
        assertEquals(List.of(BlockRequest.STATUS_IOERR), failed.statuses());
        assertEquals(List.of(BlockRequest.STATUS_OK), closing.statuses());
    }

    @Test
    void shouldCompleteAtOnceWhatNeedsNoCommand() {
        Recorded flush = TestRequests.of(Type.FLUSH, 0, 0, false);
        Recorded noExport = TestRequests.of(Type.READ, 0, 4096, false);
        Recorded zeroes = TestRequests.ranges(Type.WRITE_ZEROES, false, 0, 4096);
        Recorded discard = TestRequests.ranges(Type.DISCARD, true, 0, 4096);

        ops.start(flush.request(), FLAG_SEND_FUA, 4096); // a server without FLUSH: nothing to flush
        ops.start(noExport.request(), ALL, 0);          // no export adopted yet
        ops.start(zeroes.request(), FLAG_SEND_FLUSH, 4096);
        ops.start(discard.request(), FLAG_SEND_FLUSH, 4096); // discard is advisory

        assertNull(ops.nextWaiting());
        assertEquals(List.of(BlockRequest.STATUS_OK), flush.statuses());
        assertEquals(List.of(BlockRequest.STATUS_IOERR), noExport.statuses());
        assertEquals(List.of(BlockRequest.STATUS_UNSUPP), zeroes.statuses());
        assertEquals(List.of(BlockRequest.STATUS_OK), discard.statuses());
        assertEquals(0, ops.live());
    }

    @Test
    void shouldSplitEachRangeAtOneGibibyteAndKeepHolesOnlyWhenTheGuestAllowsUnmap() {
        ops.start(TestRequests.ranges(Type.DISCARD, false, 0, 2 * GIB + 512, 8 * GIB, 4096).request(), ALL, 4096);
        ops.start(TestRequests.ranges(Type.WRITE_ZEROES, false, 0, 4096).request(), ALL, 4096);
        ops.start(TestRequests.ranges(Type.WRITE_ZEROES, true, 0, 4096).request(), ALL, 4096);

        assertEquals(List.of(new Command(CMD_TRIM, 0, 0, (int) GIB, 0), new Command(CMD_TRIM, 0, GIB, (int) GIB, 0),
                new Command(CMD_TRIM, 0, 2 * GIB, 512, 0), new Command(CMD_TRIM, 0, 8 * GIB, 4096, 0),
                new Command(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 0, 4096, 0),
                new Command(CMD_WRITE_ZEROES, 0, 0, 4096, 0)), commands(send()));
    }

    @Test
    void shouldKeepTheFirstFailureOfARequestAndTakeAnUnsupportedTrimAsDone() {
        Recorded trim = TestRequests.ranges(Type.DISCARD, true, 0, 4096);
        Recorded zeroes = TestRequests.ranges(Type.WRITE_ZEROES, true, 0, GIB + 4096); // two commands
        ops.start(trim.request(), ALL, 4096);
        ops.start(zeroes.request(), ALL, 4096);
        List<NbdOp> sent = send();

        ops.done(sent.get(0), ENOTSUP, true);
        ops.done(sent.get(1), EIO, true);
        ops.done(sent.get(2), ENOTSUP, true); // alone it would say "unsupported"

        assertEquals(List.of(BlockRequest.STATUS_OK), trim.statuses());
        assertEquals(List.of(BlockRequest.STATUS_IOERR), zeroes.statuses());
    }

    @Test
    void shouldNameASentCommandByItsCookieOnlyOnceItLeftWholeAndOnlyInItsGeneration() {
        ops.start(TestRequests.of(Type.READ, 0, 4096, false).request(), ALL, 4096);
        NbdOp op = send().getFirst();
        op.wireEnd = 100;
        long cookie = op.cookie();

        assertNull(ops.inFlight(cookie, 99), "part of the command is still to go out");
        assertSame(op, ops.inFlight(cookie, 100));
        assertNull(ops.inFlight(cookie + 1000, 100), "no such command");
        assertNull(ops.inFlight(-1, 100));

        ops.done(op, 0, true);
        ops.start(TestRequests.of(Type.READ, 0, 4096, false).request(), ALL, 4096);
        NbdOp again = send().getFirst();
        again.wireEnd = 100;
        assertSame(op, again, "the pool hands the same command out again");
        assertNull(ops.inFlight(cookie, 100), "a reply for the command's last use");
        assertSame(again, ops.inFlight(again.cookie(), 100));
    }

    @Test
    void shouldSendEveryLiveCommandAgainOnANewConnection() {
        ops.start(TestRequests.of(Type.WRITE, 0, 8192, false).request(), ALL, 4096);
        List<NbdOp> first = send();
        ops.start(TestRequests.of(Type.READ, 0, 4096, false).request(), ALL, 4096); // still waiting

        ops.unsend();
        assertEquals(3, ops.requeue());

        List<NbdOp> again = send();
        assertEquals(3, again.size());
        assertTrue(again.containsAll(first));
        assertFalse(ops.hasWaiting());
    }

    @Test
    void shouldFailEveryLiveRequestOnceWhenTheServerIsGone() {
        List<Recorded> requests = new ArrayList<>();
        for (int i = 0; i < 10; i++) { // more than the initial pools: they grow
            Recorded r = TestRequests.of(i % 2 == 0 ? Type.READ : Type.WRITE, 4096L * i, 8192, true);
            requests.add(r);
            ops.start(r.request(), FLAG_SEND_FLUSH, 4096);
        }
        List<NbdOp> sent = send();
        ops.done(sent.get(0), 0, true); // half of a read answered
        ops.done(sent.get(2), 0, true); // a whole write answered: its flush now waits
        ops.done(sent.get(3), 0, true);
        assertEquals(CMD_FLUSH, ops.nextWaiting().command);

        assertEquals(10, ops.failAll(true));

        for (Recorded r : requests) {
            assertEquals(List.of(BlockRequest.STATUS_IOERR), r.statuses());
        }
        assertEquals(10, ops.failedOnTimeout);
        assertEquals(0, ops.live());
        assertFalse(ops.hasWaiting());
    }
}
