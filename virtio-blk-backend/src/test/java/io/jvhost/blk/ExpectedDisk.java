package io.jvhost.blk;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

/**
 * A disk's bytes as a test expects them: filled with a pattern up front, then patched with each
 * write, discard or write-zeroes the test makes, and compared in full with the store's contents.
 */
final class ExpectedDisk {
    private final MemorySegment contents;
    private final byte[] bytes;

    /** Fills {@code contents} (a store's disk) with a pattern and expects it there. */
    ExpectedDisk(MemorySegment contents, int seed) {
        this.contents = contents;
        this.bytes = BlkRig.pattern(Math.toIntExact(contents.byteSize()), seed);
        MemorySegment.copy(bytes, 0, contents, ValueLayout.JAVA_BYTE, 0, bytes.length);
    }

    byte[] bytes(long sector, int length) {
        int from = Math.toIntExact(sector * BlkRig.SECTOR);
        return Arrays.copyOfRange(bytes, from, from + length);
    }

    void expect(long sector, byte[] data) {
        System.arraycopy(data, 0, bytes, Math.toIntExact(sector * BlkRig.SECTOR), data.length);
    }

    void expectZeros(long sector, long sectors) {
        Arrays.fill(bytes, Math.toIntExact(sector * BlkRig.SECTOR), Math.toIntExact((sector + sectors) * BlkRig.SECTOR), (byte) 0);
    }

    void assertMatches() {
        assertArrayEquals(bytes, contents.toArray(ValueLayout.JAVA_BYTE), "disk contents");
    }
}
