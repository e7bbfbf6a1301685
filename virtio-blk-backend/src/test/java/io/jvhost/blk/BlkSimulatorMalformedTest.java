package io.jvhost.blk;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.blk.userstore.CountingStore;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.core.ring.ChainError;

import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.blk.BlkRig.DISCARD;
import static io.jvhost.blk.BlkRig.FLAG_UNMAP;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.IOERR;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.UNSUPP;
import static io.jvhost.blk.BlkRig.WRITE_ZEROES;
import static io.jvhost.blk.BlkRig.headerBytes;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Requests a guest should never send. Each is answered as the spec says (IOERR, UNSUPP, or a used
 * element of length 0 when there is not even a status byte); nothing in guest memory changes but
 * the status byte (the whole area around the request's buffers is compared), the disk is
 * untouched, and the next good request on the queue still works.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class BlkSimulatorMalformedTest {
    static final int DISK_BYTES = 1 << 20;
    static final long CAPACITY = DISK_BYTES / SECTOR;
    static final Completion NO_STATUS = new Completion(0, -1);
    static final Completion IO_ERROR = new Completion(1, IOERR);
    static final Completion UNSUPPORTED = new Completion(1, UNSUPP);

    private BlkRig rig;
    private ExpectedDisk disk;
    private int goodRequests;

    private void serve() throws Exception {
        RamStore store = new RamStore(DISK_BYTES);
        disk = new ExpectedDisk(store.contents(), 5);
        rig = BlkRig.serve(store, 1).start();
    }

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    /**
     * Runs one bad request made of buffers in {@code a} and asserts its completion, that only its
     * status byte changed in guest memory, that the disk did not change, and that a good write
     * and read right after it work.
     */
    private void assertRefused(Area a, Completion expected, Buffer... buffers) {
        a.snapshot();
        if (expected.status() >= 0) {
            Buffer last = lastWritable(buffers);
            a.expectStatus(last.gpa() + last.length() - 1, expected.status());
        }
        assertEquals(expected, rig.run(buffers));
        a.assertAsExpected();
        disk.assertMatches();
        assertGoodRequestsStillWork();
    }

    private static Buffer lastWritable(Buffer... buffers) {
        for (int i = buffers.length - 1; i >= 0; i--) {
            if (buffers[i].writable() && buffers[i].length() > 0) {
                return buffers[i];
            }
        }
        throw new IllegalArgumentException("no writable byte");
    }

    private void assertGoodRequestsStillWork() {
        long sector = 64 + 8L * (goodRequests % 32);
        byte[] data = pattern(1024, 1000 + goodRequests++);
        rig.write(0, sector, data);
        disk.expect(sector, data);
        assertArrayEquals(data, rig.read(0, sector, data.length), "the next good request");
        disk.assertMatches();
    }

    /** A read or write of {@code length} bytes at {@code sector}, in {@code a}; status last. */
    private static Buffer[] transfer(Area a, int type, long sector, int length) {
        long header = a.header(type, sector);
        long data = type == IN ? a.room(length) : a.put(pattern(length, 77));
        long status = a.status();
        return new Buffer[] {Buffer.readable(header, 16), new Buffer(data, length, type == IN), Buffer.writable(status, 1)};
    }

    private static Buffer[] ranges(Area a, int type, long[]... ranges) {
        long header = a.header(type, 0);
        long at = a.ranges(ranges);
        long status = a.status();
        return new Buffer[] {Buffer.readable(header, 16), Buffer.readable(at, 16 * ranges.length), Buffer.writable(status, 1)};
    }

    @Test
    void shouldCompleteAChainWithoutAWritableByteWithLengthZeroAndCountIt() throws Exception {
        serve();
        Area a = rig.area(8192);
        long outHeader = a.header(OUT, 8);
        long data = a.put(pattern(SECTOR, 1));
        long inHeader = a.header(IN, 8);

        assertRefused(a, NO_STATUS, Buffer.readable(outHeader, 16), Buffer.readable(data, SECTOR));
        assertRefused(a, NO_STATUS, Buffer.readable(inHeader, 16), Buffer.writable(data, 0));
        assertRefused(a, NO_STATUS, Buffer.readable(inHeader, 16));

        assertEquals(3, rig.handlers[0].malformed, "malformed requests counted");
    }

    @Test
    void shouldFailARequestWhoseHeaderIsShorterThanSixteenBytesWithIoError() throws Exception {
        serve();
        Area a = rig.area(8192);
        long header = a.put(headerBytes(IN, 8));
        long data = a.room(SECTOR);
        long status = a.status();

        assertRefused(a, IO_ERROR, Buffer.readable(header, 8), Buffer.writable(status, 1));
        assertRefused(a, IO_ERROR, Buffer.readable(header, 7), Buffer.readable(header + 7, 8), Buffer.writable(data, SECTOR),
                Buffer.writable(status, 1));
        assertRefused(a, IO_ERROR, Buffer.writable(data, SECTOR), Buffer.writable(status, 1));

        assertEquals(3, rig.handlers[0].malformed, "malformed requests counted");
    }

    @Test
    void shouldFailReadsAndWritesThatAreNotAWholeNumberOfSectors() throws Exception {
        serve();
        for (int length : new int[] {1, 100, 511, 513, 1000}) {
            Area a = rig.area(4096);
            assertRefused(a, IO_ERROR, transfer(a, IN, 8, length));
            assertRefused(a, IO_ERROR, transfer(a, OUT, 8, length));
        }
        Area a = rig.area(4096);
        byte[] headerAndData = new byte[16 + 511];
        System.arraycopy(headerBytes(OUT, 8), 0, headerAndData, 0, 16);
        long both = a.put(headerAndData);
        long status = a.status();
        assertRefused(a, IO_ERROR, Buffer.readable(both, headerAndData.length), Buffer.writable(status, 1));
    }

    @Test
    void shouldFailReadsAndWritesPastTheLastSector() throws Exception {
        serve();
        long[][] cases = {{CAPACITY, SECTOR}, {CAPACITY - 1, 2 * SECTOR}, {CAPACITY - 16, 16 * SECTOR + SECTOR},
            {CAPACITY + 1, 0}, {CAPACITY + 1, SECTOR}};
        for (long[] c : cases) {
            Area a = rig.area(2 * (int) c[1] + 4096);
            assertRefused(a, IO_ERROR, transfer(a, IN, c[0], (int) c[1]));
            assertRefused(a, IO_ERROR, transfer(a, OUT, c[0], (int) c[1]));
        }
    }

    @Test
    void shouldFailReadsAndWritesWhoseSectorTimesSectorSizeOverflows() throws Exception {
        serve();
        // 2^55 sectors is 2^64 bytes: an unchecked multiplication would land on byte 0 of the disk.
        long[] sectors = {Long.MAX_VALUE, -1L, Long.MIN_VALUE, 1L << 55, (1L << 55) + 1, (1L << 54) + 8,
            Long.MAX_VALUE / SECTOR, Long.MAX_VALUE / SECTOR + 1, (-1L >>> 9) + 1};
        for (long sector : sectors) {
            Area a = rig.area(4096);
            assertRefused(a, IO_ERROR, transfer(a, IN, sector, SECTOR));
            assertRefused(a, IO_ERROR, transfer(a, OUT, sector, SECTOR));
        }
    }

    @Test
    void shouldFailDiscardAndWriteZeroesRangesOutsideTheDiskWithoutApplyingAnyRange() throws Exception {
        serve();
        long[][] bad = {{CAPACITY - 1, 2}, {CAPACITY, 1}, {CAPACITY + 1, 0}, {Long.MAX_VALUE, 1}, {-1L, 1},
            {Long.MIN_VALUE, 1}, {1L << 55, 8}, {(1L << 55) + 8, 8}, {0, 0xFFFF_FFFFL}, {8, 0x8000_0000L},
            {CAPACITY - 8, 0xFFFF_FFF9L}};
        for (int type : new int[] {DISCARD, WRITE_ZEROES}) {
            for (long[] range : bad) {
                Area a = rig.area(4096);
                assertRefused(a, IO_ERROR, ranges(a, type, new long[] {0, 8, 0}, new long[] {range[0], range[1], 0}));
            }
        }
    }

    @Test
    void shouldFailDiscardRangesNotAlignedToTheLogicalBlockSize() throws Exception {
        CountingStore store = new CountingStore(DISK_BYTES, CountingStore.Capabilities.ALL.blockSize(4096));
        disk = new ExpectedDisk(store.contents(), 6);
        rig = BlkRig.serve(store, 1).start();
        for (long[] range : new long[][] {{1, 8}, {8, 7}, {4, 4}, {CAPACITY - 4, 4}}) {
            Area a = rig.area(4096);
            assertRefused(a, IO_ERROR, ranges(a, DISCARD, new long[] {range[0], range[1], 0}));
        }
        assertEquals(0, store.count(BlockRequest.Type.DISCARD), "discards that reached the store");

        disk.expectZeros(16, 8);
        disk.expectZeros(3, 5);
        assertEquals(new Completion(1, OK), rig.ranges(DISCARD, new long[] {16, 8, 0}), "an aligned discard");
        assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, new long[] {3, 5, 0}), "write-zeroes needs no alignment");
        disk.assertMatches();
    }

    @Test
    void shouldFailDiscardWithMoreRangesThanMaxDiscardSeg() throws Exception {
        serve();
        long[][] many = new long[33][];
        for (int i = 0; i < many.length; i++) {
            many[i] = new long[] {100 + 2L * i, 1, 0};
        }
        for (int type : new int[] {DISCARD, WRITE_ZEROES}) {
            Area a = rig.area(4096);
            assertRefused(a, IO_ERROR, ranges(a, type, many));
        }

        long[][] most = java.util.Arrays.copyOf(many, 32);
        for (long[] r : most) {
            disk.expectZeros(r[0], r[1]);
        }
        assertEquals(new Completion(1, OK), rig.ranges(DISCARD, most), "32 ranges are allowed");
        disk.assertMatches();
    }

    @Test
    void shouldFailDiscardAndWriteZeroesWithoutAWholeRange() throws Exception {
        serve();
        for (int type : new int[] {DISCARD, WRITE_ZEROES}) {
            Area a = rig.area(4096);
            long header = a.header(type, 0);
            long range = a.ranges(new long[] {8, 8, 0}, new long[] {24, 8, 0});
            long status = a.status();
            assertRefused(a, IO_ERROR, Buffer.readable(header, 16), Buffer.writable(status, 1));
            assertRefused(a, IO_ERROR, Buffer.readable(header, 16), Buffer.readable(range, 8), Buffer.writable(status, 1));
            assertRefused(a, IO_ERROR, Buffer.readable(header, 16), Buffer.readable(range, 24), Buffer.writable(status, 1));
        }
    }

    @Test
    void shouldAnswerUnknownRangeFlagsWithUnsuppWithoutApplyingAnyRange() throws Exception {
        serve();
        long[][] cases = {{DISCARD, FLAG_UNMAP}, {DISCARD, 2}, {WRITE_ZEROES, 2}, {WRITE_ZEROES, FLAG_UNMAP | 4},
            {WRITE_ZEROES, 0x8000_0000L}};
        for (long[] c : cases) {
            Area a = rig.area(4096);
            assertRefused(a, UNSUPPORTED, ranges(a, (int) c[0], new long[] {0, 8, 0}, new long[] {16, 8, c[1]}));
        }
    }

    @Test
    void shouldCompleteAChainWithAnUnmappedBufferWithLengthZero() throws Exception {
        serve();
        Area a = rig.area(4096);
        long header = a.header(IN, 8);
        long status = a.status();
        long beyond = rig.ram.size() - SECTOR / 2; // runs past the end of guest memory

        assertRefused(a, new Completion(0, BlkRig.UNWRITTEN), Buffer.readable(header, 16), Buffer.writable(beyond, SECTOR),
                Buffer.writable(status, 1));

        assertEquals(1, rig.backend.queue(0).counters().chainsRejected(ChainError.BUFFER_UNMAPPED));
    }
}
