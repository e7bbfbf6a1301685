package io.jvhost.blk;

import static io.jvhost.core.device.VirtioFeatures.*;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Layout;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.LongUnaryOperator;

import java.nio.file.Path;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import static io.jvhost.blk.BlkRig.DISCARD;
import static io.jvhost.blk.BlkRig.FLAG_UNMAP;
import static io.jvhost.blk.BlkRig.FLUSH;
import static io.jvhost.blk.BlkRig.GET_ID;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.UNSUPP;
import static io.jvhost.blk.BlkRig.WRITE_ZEROES;
import static io.jvhost.blk.BlkRig.bit;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Every virtio-blk request type against a RAM disk and an image file on each I/O engine (io_uring,
 * threads), through a real vhost-user socket and split or packed rings in shared guest memory: what
 * lands on the disk, what lands in guest memory (and that nothing else there changes), the status
 * byte, and the used length.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
@ParameterizedClass(name = "{0} {1}")
@MethodSource("layoutsAndDisks")
class BlkSimulatorTest {
    static final int DISK_BYTES = 1 << 20;

    /** The guest's rings: the same tests on split and on packed ones. */
    @Parameter(0)
    Layout layout;
    /** The disk behind them: RAM, or an image file on either I/O engine. */
    @Parameter(1)
    TestDisk.Kind kind;
    @TempDir
    Path dir;
    private TestDisk testDisk;
    private BlkRig rig;
    private ExpectedDisk disk;

    /** Every disk kind on both ring layouts. */
    static List<Arguments> layoutsAndDisks() {
        List<Arguments> all = new ArrayList<>();
        for (Layout l : Layout.values()) {
            for (TestDisk.Kind k : TestDisk.Kind.values()) {
                all.add(Arguments.of(l, k));
            }
        }
        return all;
    }

    /** Serves a patterned disk to a driver that accepts what {@code accept} makes of the offered features. */
    private void serve(LongUnaryOperator accept) throws Exception {
        testDisk = TestDisk.open(kind, dir, DISK_BYTES);
        disk = new ExpectedDisk(testDisk.contents(), 99);
        rig = BlkRig.serve(testDisk.store(), 1, layout);
        rig.start(accept.applyAsLong(rig.offered));
    }

    /** The serial the store reports, as GET_ID bytes. */
    private byte[] serial() {
        return rig.store.id().getBytes(StandardCharsets.US_ASCII);
    }

    private void serve() throws Exception {
        serve(offered -> offered);
    }

    @AfterEach
    void close() throws Exception {
        try {
            if (rig != null) {
                rig.close();
            }
        } finally {
            if (testDisk != null) {
                testDisk.close();
            }
        }
    }

    @Test
    void shouldReadSectorsIntoGuestMemoryAndReportTheDataPlusTheStatusByteAsUsed() throws Exception {
        serve();
        Area a = rig.area(8192);
        long header = a.header(IN, 10);
        long data = a.room(4096);
        long status = a.status();
        a.snapshot();
        a.expect(data, disk.bytes(10, 4096));
        a.expectStatus(status, OK);

        Completion c = rig.run(Buffer.readable(header, 16), Buffer.writable(data, 4096), Buffer.writable(status, 1));

        assertEquals(new Completion(4096 + 1, OK), c);
        a.assertAsExpected();
        disk.assertMatches();
    }

    @Test
    void shouldReadTheLastSectorOfTheDisk() throws Exception {
        serve();
        long last = DISK_BYTES / SECTOR - 1;
        assertArrayEquals(disk.bytes(last, SECTOR), rig.read(0, last, SECTOR));
    }

    @Test
    void shouldWriteGuestDataToTheDiskAndReportOnlyTheStatusByteAsUsed() throws Exception {
        serve();
        byte[] data = pattern(4096, 7);
        Area a = rig.area(8192);
        long header = a.header(OUT, 100);
        long at = a.put(data);
        long status = a.status();
        a.snapshot();
        a.expectStatus(status, OK);
        disk.expect(100, data);

        Completion c = rig.run(Buffer.readable(header, 16), Buffer.readable(at, 4096), Buffer.writable(status, 1));

        assertEquals(new Completion(1, OK), c);
        a.assertAsExpected();
        disk.assertMatches();
        assertArrayEquals(data, rig.read(0, 100, 4096), "read back");
    }

    @Test
    void shouldCompleteReadsAndWritesOfNoSectorsWithOnlyTheStatusByte() throws Exception {
        serve();
        Area a = rig.area(1024);
        long readHeader = a.header(IN, 5);
        long writeHeader = a.header(OUT, 5);
        long status1 = a.status();
        long status2 = a.status();
        a.snapshot();
        a.expectStatus(status1, OK);
        a.expectStatus(status2, OK);

        assertEquals(new Completion(1, OK), rig.run(Buffer.readable(readHeader, 16), Buffer.writable(status1, 1)));
        assertEquals(new Completion(1, OK), rig.run(Buffer.readable(writeHeader, 16), Buffer.writable(status2, 1)));
        a.assertAsExpected();
        disk.assertMatches();
    }

    @Test
    void shouldCompleteFlushWithOkWhenTheStoreHasNothingVolatileToFlush() throws Exception {
        serve();
        assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0));
        disk.assertMatches();
    }

    @Test
    void shouldAnswerGetIdWithTheSerialPaddedWithZerosToTwentyBytes() throws Exception {
        serve();
        Area a = rig.area(1024);
        long header = a.header(GET_ID, 0);
        long id = a.room(20);
        long status = a.status();
        a.snapshot();
        a.expect(id, Arrays.copyOf(serial(), 20));
        a.expectStatus(status, OK);

        Completion c = rig.run(Buffer.readable(header, 16), Buffer.writable(id, 20), Buffer.writable(status, 1));

        assertEquals(new Completion(20 + 1, OK), c);
        a.assertAsExpected();
    }

    @Test
    void shouldTruncateTheSerialToAShorterBuffer() throws Exception {
        serve();
        Area a = rig.area(1024);
        long header = a.header(GET_ID, 0);
        long id = a.room(8);
        long status = a.status();
        a.snapshot();
        a.expect(id, Arrays.copyOf(serial(), 8));
        a.expectStatus(status, OK);

        Completion c = rig.run(Buffer.readable(header, 16), Buffer.writable(id, 8), Buffer.writable(status, 1));

        assertEquals(new Completion(8 + 1, OK), c);
        a.assertAsExpected();
    }

    @Test
    void shouldWriteNoMoreThanTwentyBytesOfSerialIntoALargerBuffer() throws Exception {
        serve();
        Area a = rig.area(1024);
        long header = a.header(GET_ID, 0);
        long id = a.room(32);
        long status = a.status();
        a.snapshot();
        a.expect(id, Arrays.copyOf(serial(), 20));
        a.expectStatus(status, OK);

        Completion c = rig.run(Buffer.readable(header, 16), Buffer.writable(id, 32), Buffer.writable(status, 1));

        assertEquals(new Completion(20 + 1, OK), c);
        a.assertAsExpected();
    }

    @Test
    void shouldAnswerGetIdWithOnlyAStatusByteWithoutWritingAnySerial() throws Exception {
        serve();
        Area a = rig.area(1024);
        long header = a.header(GET_ID, 0);
        long status = a.status();
        a.snapshot();
        a.expectStatus(status, OK);

        assertEquals(new Completion(1, OK), rig.run(Buffer.readable(header, 16), Buffer.writable(status, 1)));
        a.assertAsExpected();
    }

    @Test
    void shouldZeroEveryRangeOfOneDiscardRequest() throws Exception {
        serve();
        disk.expectZeros(5, 3);
        disk.expectZeros(40, 16);
        disk.expectZeros(2000, 48);

        Completion c = rig.ranges(DISCARD, new long[] {5, 3, 0}, new long[] {40, 16, 0}, new long[] {2000, 48, 0});

        assertEquals(new Completion(1, OK), c);
        disk.assertMatches();
    }

    @Test
    void shouldZeroEveryRangeOfWriteZeroesWithoutUnmap() throws Exception {
        serve();
        disk.expectZeros(1, 1);
        disk.expectZeros(64, 128);

        Completion c = rig.ranges(WRITE_ZEROES, new long[] {1, 1, 0}, new long[] {64, 128, 0});

        assertEquals(new Completion(1, OK), c);
        disk.assertMatches();
    }

    @Test
    void shouldZeroEveryRangeOfWriteZeroesWithUnmap() throws Exception {
        serve();
        disk.expectZeros(200, 8);
        disk.expectZeros(1000, 100);
        disk.expectZeros(2047, 1);

        Completion c = rig.ranges(WRITE_ZEROES, new long[] {200, 8, FLAG_UNMAP}, new long[] {1000, 100, FLAG_UNMAP},
                new long[] {2047, 1, FLAG_UNMAP});

        assertEquals(new Completion(1, OK), c);
        disk.assertMatches();
    }

    @Test
    void shouldZeroRangesWithAndWithoutUnmapMixedInOneRequest() throws Exception {
        serve();
        disk.expectZeros(3, 2);
        disk.expectZeros(500, 10);
        disk.expectZeros(12, 0);

        Completion c = rig.ranges(WRITE_ZEROES, new long[] {3, 2, 0}, new long[] {500, 10, FLAG_UNMAP},
                new long[] {12, 0, 0});

        assertEquals(new Completion(1, OK), c);
        disk.assertMatches();
    }

    @Test
    void shouldAnswerEveryUnknownRequestTypeWithUnsuppAndLeaveTheDiskAlone() throws Exception {
        serve();
        int[] types = {2, 3, 5, 7, 9, 10, 12, 14, 15, 99, 0x7FFF_FFFF, 0x8000_0000, -1};
        Area a = rig.area(4096);
        long data = a.room(SECTOR);
        for (int type : types) {
            long header = a.header(type, 0);
            long status = a.status();
            a.snapshot();
            a.expectStatus(status, UNSUPP);

            Completion c = rig.run(Buffer.readable(header, 16), Buffer.writable(data, SECTOR), Buffer.writable(status, 1));

            assertEquals(new Completion(1, UNSUPP), c, "type " + type);
            a.assertAsExpected();
        }
        assertEquals(types.length, rig.handlers[0].unsupported, "requests counted as unsupported");
        disk.assertMatches();
        assertArrayEquals(disk.bytes(0, SECTOR), rig.read(0, 0, SECTOR), "the queue still serves reads");
    }

    @Test
    void shouldAnswerDiscardAndWriteZeroesWithUnsuppWhenTheDriverDidNotAcceptThem() throws Exception {
        serve(offered -> offered & ~bit(BLK_DISCARD) & ~bit(BLK_WRITE_ZEROES));

        assertEquals(new Completion(1, UNSUPP), rig.ranges(DISCARD, new long[] {0, 8, 0}));
        assertEquals(new Completion(1, UNSUPP), rig.ranges(WRITE_ZEROES, new long[] {0, 8, 0}));
        disk.assertMatches();
    }

    @Test
    void shouldAnswerOnlyDiscardWithUnsuppWhenTheDriverAcceptedWriteZeroesAlone() throws Exception {
        serve(offered -> offered & ~bit(BLK_DISCARD));
        disk.expectZeros(16, 8);

        assertEquals(new Completion(1, UNSUPP), rig.ranges(DISCARD, new long[] {0, 8, 0}));
        assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, new long[] {16, 8, 0}));
        disk.assertMatches();
    }
}
