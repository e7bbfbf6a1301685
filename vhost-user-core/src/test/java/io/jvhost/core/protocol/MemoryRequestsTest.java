package io.jvhost.core.protocol;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/** Decoding of the memory requests: the memory table, single regions and the dirty log base. */
class MemoryRequestsTest {
    private static final RegionDescription A = new RegionDescription(0, 0x10_0000, 0x7000_0000L, 0);
    private static final RegionDescription B = new RegionDescription(0x10_0000, 0x1000, 0x7100_0000L, 0x2000);

    private static byte[] table(int count, RegionDescription... regions) {
        ByteBuffer b = ByteBuffer.allocate(8 + 32 * regions.length).order(ByteOrder.LITTLE_ENDIAN).putInt(count).putInt(0);
        for (RegionDescription r : regions) {
            b.putLong(r.gpa()).putLong(r.size()).putLong(r.hva()).putLong(r.mmapOffset());
        }
        return b.array();
    }

    private static void assertRefused(String expected, VringRequestsTest.ThrowingDecode decode) {
        ProtocolException e = assertThrows(ProtocolException.class, decode::run);
        assertTrue(e.getMessage().contains(expected), () -> "'" + e.getMessage() + "' should say '" + expected + "'");
    }

    // ---- memory table ----------------------------------------------------------------------------

    @Test
    void shouldDecodeEveryRegionOfAMemoryTable() throws ProtocolException {
        assertEquals(List.of(A, B), MemoryTable.decode(table(2, A, B), 2).regions());
        assertEquals(List.of(), MemoryTable.decode(table(0), 0).regions(), "an empty table forgets all memory");
        assertArrayEquals(table(2, A, B), new MemoryTable(List.of(A, B)).encode());
    }

    @Test
    void shouldDecodeATableOfEightRegionsAndRefuseNine() throws ProtocolException {
        RegionDescription[] nine = new RegionDescription[9];
        for (int i = 0; i < 9; i++) {
            nine[i] = new RegionDescription(i * 0x1000L, 0x1000, 0x7000_0000L + i * 0x1000L, 0);
        }
        RegionDescription[] eight = java.util.Arrays.copyOf(nine, 8);
        assertEquals(8, MemoryTable.decode(table(8, eight), 8).regions().size());
        assertRefused("memory table of 9 regions", () -> MemoryTable.decode(table(9, nine), 9));
        assertRefused("memory table of 9 regions", () -> MemoryTable.decode(table(9, eight), 8));
    }

    @Test
    void shouldRefuseATableShorterThanItsCountOrItsHeader() {
        assertRefused("memory table of 4 bytes", () -> MemoryTable.decode(new byte[4], 0));
        assertRefused("memory table of 2 regions in 40 bytes", () -> MemoryTable.decode(table(2, A), 2));
        assertRefused("memory table of 4294967295 regions", () -> MemoryTable.decode(table(-1, A), 1));
    }

    @Test
    void shouldRefuseATableLongerThanEightRegions() {
        byte[] tooLong = new byte[8 + 32 * 8 + 1];
        assertRefused("memory table of 0 regions in 265 bytes", () -> MemoryTable.decode(tooLong, 0));
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 3})
    void shouldRefuseATableWhoseFdCountDiffersFromItsRegionCount(int fds) {
        assertRefused(fds + " fds for 2 regions", () -> MemoryTable.decode(table(2, A, B), fds));
    }

    static Stream<Arguments> badRegions() {
        long hva = 0x7000_0000L;
        return Stream.of(
                Arguments.of("of size 0", new RegionDescription(0, 0, hva, 0), "size 0"),
                Arguments.of("of size 2^63", new RegionDescription(0, Long.MIN_VALUE, hva, 0), "size 0 or over 2^63"),
                Arguments.of("whose guest range wraps", new RegionDescription(-0x1000, 0x2000, hva, 0), "wraps"),
                Arguments.of("whose own range wraps", new RegionDescription(0, 0x2000, -0x1000, 0), "wraps"),
                Arguments.of("at a negative file offset", new RegionDescription(0, 0x1000, hva, -0x1000), "wraps"),
                Arguments.of("whose file range overflows", new RegionDescription(0, 0x1000, hva, Long.MAX_VALUE - 0x10), "wraps"));
    }

    @ParameterizedTest(name = "a region {0}")
    @MethodSource("badRegions")
    void shouldRefuseARegionThatIsEmptyOrWrapsInATableAndAlone(String what, RegionDescription bad, String expected) {
        assertRefused(expected, () -> MemoryTable.decode(table(2, A, bad), 2));
        assertRefused(expected, () -> RegionDescription.decodeAdd(bad.encodeSingle(), 1));
        assertRefused(expected, () -> RegionDescription.decodeRemove(bad.encodeSingle(), 0));
    }

    @Test
    void shouldAcceptARegionEndingExactlyAt2To64() throws ProtocolException {
        RegionDescription top = new RegionDescription(-0x1000, 0x1000, -0x1000, 0);
        assertEquals(top, RegionDescription.decodeAdd(top.encodeSingle(), 1));
    }

    // ---- single regions --------------------------------------------------------------------------

    @Test
    void shouldDecodeTheRegionAfterThePaddingOfAddAndRemove() throws ProtocolException {
        assertEquals(B, RegionDescription.decodeAdd(B.encodeSingle(), 1));
        assertEquals(B, RegionDescription.decodeRemove(B.encodeSingle(), 0));
        assertEquals(B, RegionDescription.decodeRemove(B.encodeSingle(), 1), "QEMU sends the fd along");
    }

    @Test
    void shouldRefuseAnAddWithoutExactlyOneFdOrOfAnotherSize() {
        assertRefused("0 fds, expected 1", () -> RegionDescription.decodeAdd(B.encodeSingle(), 0));
        assertRefused("2 fds, expected 1", () -> RegionDescription.decodeAdd(B.encodeSingle(), 2));
        assertRefused("payload of 32 bytes", () -> RegionDescription.decodeAdd(new byte[32], 1));
    }

    @Test
    void shouldRefuseARemoveWithTwoFdsOrOfAnotherSize() {
        assertRefused("REM_MEM_REG of 40 bytes with 2 fds", () -> RegionDescription.decodeRemove(B.encodeSingle(), 2));
        assertRefused("REM_MEM_REG of 41 bytes", () -> RegionDescription.decodeRemove(new byte[41], 0));
    }

    // ---- log base --------------------------------------------------------------------------------

    @Test
    void shouldDecodeTheSizeAndOffsetOfTheDirtyLog() throws ProtocolException {
        LogBase l = new LogBase(4096, 8192);
        assertEquals(l, LogBase.decode(l.encode(), 1));
    }

    @Test
    void shouldRefuseAnEmptyOrOverflowingLogAndOneWithoutItsFd() {
        assertRefused("log of 0 bytes", () -> LogBase.decode(new LogBase(0, 0).encode(), 1));
        assertRefused("log of -4096 bytes", () -> LogBase.decode(new LogBase(-4096, 0).encode(), 1));
        assertRefused("at -1", () -> LogBase.decode(new LogBase(4096, -1).encode(), 1));
        assertRefused("log of 4096 bytes at " + (Long.MAX_VALUE - 10), () -> LogBase.decode(new LogBase(4096, Long.MAX_VALUE - 10).encode(), 1));
        assertRefused("0 fds, expected 1", () -> LogBase.decode(new LogBase(4096, 0).encode(), 0));
        assertRefused("payload of 8 bytes", () -> LogBase.decode(new byte[8], 1));
    }
}
