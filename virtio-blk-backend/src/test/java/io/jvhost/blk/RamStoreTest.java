package io.jvhost.blk;

import io.jvhost.blk.BlockRequest.Type;
import io.jvhost.blk.TestRequests.Recorded;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;
import java.util.stream.LongStream;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The RAM disk takes memory as it is written, as Linux's brd does: pages never written read as
 * zeroes without being touched, discarded pages go back to the kernel, and a successor that takes
 * the memfd (a live upgrade) finds exactly the written pages again.
 */
class RamStoreTest {
    private static final int PAGE = 4096;
    private static final long DISK = 64 * PAGE;

    private final Arena arena = Arena.ofConfined();
    private final RamStore store = new RamStore(DISK);
    /** What the disk should hold, byte for byte. */
    private final byte[] expected = new byte[(int) DISK];

    @AfterEach
    void close() {
        store.close();
        arena.close();
    }

    @Test
    void aFreshDiskReadsZeroesAndHoldsNoMemory() {
        MemorySegment buffer = arena.allocate(3 * PAGE).fill((byte) 0x77);
        submit(store, read(buffer, 5 * PAGE, 3 * PAGE));
        assertArrayEquals(new byte[3 * PAGE], buffer.toArray(JAVA_BYTE));
        assertEquals(0, store.bytesWritten());
    }

    @Test
    void aWriteAcrossPagesInSeveralSegmentsReadsBackExactlyAndTakesOnlyItsPages() {
        write(3000, 100, 4000, 900); // bytes 3000-7999: the end of page 0 and the start of page 1
        assertEquals(2 * PAGE, store.bytesWritten());
        assertDiskIs(expected);
    }

    @Test
    void aReadMixingWrittenAndUnwrittenPagesGetsEachRightInOneSegment() {
        write(PAGE + 10, 20);
        write(3 * PAGE, PAGE);
        MemorySegment buffer = arena.allocate(5 * PAGE).fill((byte) 0x77);
        submit(store, read(buffer, 0, 5 * PAGE));
        assertArrayEquals(Arrays.copyOf(expected, 5 * PAGE), buffer.toArray(JAVA_BYTE));
    }

    @Test
    void aDiscardGivesWholePagesBackAndZeroesThePartOfAPageItCovers() {
        write(0, 4 * PAGE);
        long from = 1000, to = 3 * PAGE + 700; // the end of page 0, pages 1 and 2 whole, the start of page 3
        submit(store, TestRequests.ranges(Type.DISCARD, false, from, to - from));
        Arrays.fill(expected, (int) from, (int) to, (byte) 0);
        assertEquals(2 * PAGE, store.bytesWritten(), "pages 0 and 3 keep data, 1 and 2 are holes again");
        assertDiskIs(expected);
    }

    @Test
    void writeZeroesInsideOnePageZeroesItInPlace() {
        write(8 * PAGE, PAGE);
        submit(store, TestRequests.ranges(Type.WRITE_ZEROES, true, 8 * PAGE + 512, 1024));
        Arrays.fill(expected, 8 * PAGE + 512, 8 * PAGE + 1536, (byte) 0);
        assertEquals(PAGE, store.bytesWritten());
        assertDiskIs(expected);
    }

    @Test
    void writeZeroesWithoutUnmapZeroesThePagesButKeepsThemAllocated() {
        write(0, 4 * PAGE);
        submit(store, TestRequests.ranges(Type.WRITE_ZEROES, false, 500, 3 * PAGE));
        Arrays.fill(expected, 500, 500 + 3 * PAGE, (byte) 0);
        assertEquals(4 * PAGE, store.bytesWritten(), "no page given back");
        assertDiskIs(expected);
        submit(store, TestRequests.ranges(Type.WRITE_ZEROES, true, PAGE, 2 * PAGE));
        assertEquals(2 * PAGE, store.bytesWritten(), "with unmap, the whole pages go");
        assertDiskIs(expected);
    }

    @Test
    void aSuccessorOnTheSameMemoryFindsTheWrittenPagesAndTheirData() throws Exception {
        write(0, 4 * PAGE);
        write(40 * PAGE + 100, 50);
        submit(store, TestRequests.ranges(Type.DISCARD, false, PAGE, 2 * PAGE));
        Arrays.fill(expected, PAGE, 3 * PAGE, (byte) 0);
        try (RamStore successor = new RamStore(store.duplicateFd(), DISK, false)) {
            assertEquals(3 * PAGE, successor.bytesWritten(), "pages 0, 3 and 40");
            assertDiskIs(successor, expected);
        }
    }

    @Test
    void aDiscardAcrossManyLeavesOfTheBitmapClearsOnlyWhatItCovers() {
        try (RamStore big = new RamStore(512L << 20)) {
            long[] at = {10L << 20, 100L << 20, 400L << 20}; // leaves 0, 0 and 3 of 128 MiB each
            for (long offset : at) {
                MemorySegment data = arena.allocate(PAGE).fill((byte) 9);
                Recorded w = TestRequests.inSegments(Type.WRITE, data, PAGE);
                w.request().offset = offset;
                submit(big, w);
            }
            submit(big, TestRequests.ranges(Type.DISCARD, false, 64L << 20, (450L - 64) << 20));
            assertEquals(PAGE, big.bytesWritten(), "only the page at 10 MiB is left");
            MemorySegment buffer = arena.allocate(PAGE);
            submit(big, read(buffer, 10L << 20, PAGE));
            assertEquals(9, buffer.get(JAVA_BYTE, PAGE - 1));
        }
    }

    @Test
    @Timeout(10)
    void aHugeDiskCostsLittleUntilWrittenAndIsDiscardedWholeAtOnce() {
        try (RamStore huge = new RamStore(16L << 40)) { // 16 TiB: a flat bitmap would be 512 MiB of heap
            MemorySegment data = arena.allocate(PAGE).fill((byte) 3);
            Recorded w = TestRequests.inSegments(Type.WRITE, data, PAGE);
            w.request().offset = (16L << 40) - PAGE;
            submit(huge, w);
            assertEquals(PAGE, huge.bytesWritten());
            submit(huge, TestRequests.ranges(Type.DISCARD, false, 0, 16L << 40)); // what mkfs does first
            assertEquals(0, huge.bytesWritten());
        }
    }

    @Test
    void whatATestPutsInTheContentsIsWhatRequestsRead() {
        MemorySegment contents = store.contents();
        contents.set(JAVA_BYTE, 9 * PAGE + 1, (byte) 42);
        expected[9 * PAGE + 1] = 42;
        assertDiskIs(expected);
    }

    /** Writes a pattern at {@code offset} from guest segments of {@code lengths} bytes. */
    private void write(long offset, long... lengths) {
        long total = LongStream.of(lengths).sum();
        MemorySegment data = arena.allocate(total);
        for (int i = 0; i < total; i++) {
            byte b = (byte) (offset + i * 7 + 1);
            data.set(JAVA_BYTE, i, b);
            expected[(int) offset + i] = b;
        }
        Recorded w = TestRequests.inSegments(Type.WRITE, data, lengths);
        w.request().offset = offset;
        submit(store, w);
    }

    private static Recorded read(MemorySegment buffer, long offset, long length) {
        Recorded r = TestRequests.inSegments(Type.READ, buffer, length);
        r.request().offset = offset;
        return r;
    }

    private void assertDiskIs(byte[] bytes) {
        assertDiskIs(store, bytes);
    }

    /** Reads the whole disk in odd-sized segments and compares it with {@code bytes}. */
    private void assertDiskIs(RamStore disk, byte[] bytes) {
        MemorySegment buffer = arena.allocate(DISK).fill((byte) 0x77);
        submit(disk, TestRequests.inSegments(Type.READ, buffer, 5000, DISK - 5000 - 1536, 1536));
        assertArrayEquals(bytes, buffer.toArray(JAVA_BYTE));
    }

    private static void submit(RamStore disk, Recorded r) {
        disk.submit(new BlockRequest[] {r.request()}, 1);
        assertEquals(List.of(BlockRequest.STATUS_OK), r.statuses());
    }
}
