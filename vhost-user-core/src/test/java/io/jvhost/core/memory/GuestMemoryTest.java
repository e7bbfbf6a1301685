package io.jvhost.core.memory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * Translation edges of one immutable table: exact region ends, empty and oversized ranges,
 * adjacent regions, gaps, and addresses above 2^63 where signed arithmetic would go wrong.
 */
class GuestMemoryTest {
    // Given out of order; sorted by unsigned gpa they are indices 0..4.
    private static final long A = 0x1000, B = 0x2000, C = 0x10_0000, D = 0x8000_0000_0000_0000L, E = -0x1000L;
    private static final long A_SIZE = 0x1000, B_SIZE = 0x2000, C_SIZE = 0x1000, D_SIZE = 0x1000, E_SIZE = 0x1000;
    private static final long A_HVA = 0x7000_0000_0000L, B_HVA = 0x5000_0000_0000L, E_HVA = -0x2000L;

    private Arena arena;
    private GuestMemory memory;

    @BeforeEach
    void setUp() {
        arena = Arena.ofConfined();
        memory = new GuestMemory(new MemoryRegion[] {
            region(E, E_SIZE, E_HVA), region(C, C_SIZE, 0x6000_0000_0000L), region(A, A_SIZE, A_HVA),
            region(D, D_SIZE, 0x4000_0000_0000L), region(B, B_SIZE, B_HVA)});
    }

    @AfterEach
    void tearDown() {
        arena.close();
    }

    private MemoryRegion region(long gpa, long size, long hva) {
        return new MemoryRegion(gpa, size, hva, 0, arena.allocate(size), arena, null);
    }

    @Test
    void shouldSortRegionsByUnsignedGuestAddress() {
        assertEquals(5, memory.regionCount());
        long[] gpas = {A, B, C, D, E};
        for (int i = 0; i < gpas.length; i++) {
            assertEquals(gpas[i], memory.gpaBase(i));
            assertEquals(gpas[i], memory.region(i).gpa());
            assertEquals(memory.region(i).segment(), memory.segment(i));
        }
    }

    @Test
    void shouldFindTheRegionHoldingARange() {
        assertEquals(0, memory.regionOf(A, 1));
        assertEquals(0, memory.regionOf(A + 0x800, 0x10));
        assertEquals(1, memory.regionOf(B, B_SIZE));
        assertEquals(2, memory.regionOf(C + 5, 7));
        assertEquals(3, memory.regionOf(D, D_SIZE));
        assertEquals(4, memory.regionOf(E, E_SIZE));
    }

    @Test
    void shouldAcceptARangeEndingExactlyAtTheEndOfARegion() {
        assertEquals(0, memory.regionOf(A, A_SIZE));
        assertEquals(0, memory.regionOf(A + A_SIZE - 1, 1));
        assertEquals(2, memory.regionOf(C + C_SIZE - 16, 16));
        assertEquals(1, memory.regionOf(B + B_SIZE - 1, 1));
    }

    @Test
    void shouldRefuseARangeOneByteLongerThanItsRegion() {
        assertEquals(-1, memory.regionOf(A, A_SIZE + 1));
        assertEquals(-1, memory.regionOf(A + A_SIZE - 1, 2));
        assertEquals(-1, memory.regionOf(C, C_SIZE + 1));
        assertEquals(-1, memory.regionOf(C + C_SIZE - 16, 17));
    }

    @Test
    void shouldRefuseARangeCrossingIntoAnAdjacentRegion() {
        assertEquals(-1, memory.regionOf(B - 8, 16));
        assertEquals(-1, memory.regionOf(A, A_SIZE + B_SIZE));
        assertNull(memory.translate(B - 1, 2));
    }

    @Test
    void shouldRefuseRangesInGapsOrBeforeTheFirstRegion() {
        assertEquals(-1, memory.regionOf(0, 1));
        assertEquals(-1, memory.regionOf(A - 1, 1));
        assertEquals(-1, memory.regionOf(A - 1, 2));
        assertEquals(-1, memory.regionOf(B + B_SIZE, 1));
        assertEquals(-1, memory.regionOf(C - 1, 2));
        assertEquals(-1, memory.regionOf(C + C_SIZE, 1));
    }

    @Test
    void shouldRefuseLengthsLargerThanAnyRegion() {
        for (long length : new long[] {B_SIZE + 1, 1L << 32, Long.MAX_VALUE, Long.MIN_VALUE, -1L, -B_SIZE}) {
            assertEquals(-1, memory.regionOf(B, length), "length " + Long.toUnsignedString(length));
            assertEquals(-1, memory.regionOf(E, length), "length " + Long.toUnsignedString(length));
            assertNull(memory.translate(B, length));
        }
    }

    @Test
    void shouldTreatAnEmptyRangeAsInsideUpToAndIncludingTheEndOfARegion() {
        assertEquals(0, memory.regionOf(A, 0));
        assertEquals(2, memory.regionOf(C + C_SIZE, 0), "the empty range at the end of C");
        assertEquals(1, memory.regionOf(B, 0), "the empty range at the A/B boundary belongs to B");
        assertEquals(-1, memory.regionOf(C + C_SIZE + 1, 0));
        assertEquals(-1, memory.regionOf(0, 0));
        MemorySegment empty = memory.translate(C + C_SIZE, 0);
        assertNotNull(empty);
        assertEquals(0, empty.byteSize());
    }

    @Test
    void shouldCompareAddressesAbove2To63AsUnsigned() {
        assertEquals(-1, memory.regionOf(Long.MAX_VALUE, 1), "2^63 - 1 lies just below D");
        assertEquals(-1, memory.regionOf(Long.MAX_VALUE, 2), "starts below D, ends inside it");
        assertEquals(3, memory.regionOf(D + D_SIZE - 1, 1));
        assertEquals(-1, memory.regionOf(D + D_SIZE, 1));
        assertEquals(-1, memory.regionOf(D - 1, 1));
    }

    @Test
    void shouldHandleARegionEndingExactlyAt2To64() {
        assertEquals(4, memory.regionOf(-1L, 1));
        assertEquals(4, memory.regionOf(-16L, 16));
        assertEquals(4, memory.regionOf(-1L, 0));
        assertEquals(-1, memory.regionOf(-16L, 17), "wraps past 2^64");
        assertEquals(-1, memory.regionOf(-16L, 64), "wraps past 2^64");
        assertEquals(-1, memory.regionOf(-1L, -1L));
        assertEquals(-1, memory.regionOf(E - 1, 2));
        MemorySegment s = memory.translate(-16L, 16);
        assertNotNull(s);
        assertEquals(memory.segment(4).address() + E_SIZE - 16, s.address());
    }

    @Test
    void shouldTranslateToASliceOfTheRegionMapping() {
        MemorySegment s = memory.translate(B + 0x123, 0x45);
        assertNotNull(s);
        assertEquals(0x45, s.byteSize());
        assertEquals(memory.segment(1).address() + 0x123, s.address());
        s.set(JAVA_BYTE, 0, (byte) 42);
        assertEquals(42, memory.segment(1).get(JAVA_BYTE, 0x123));
        assertNull(memory.translate(0x4000, 1));
    }

    @Test
    void shouldTranslateFrontendAddressesByEachRegionsOwnHva() {
        MemorySegment s = memory.translateHva(A_HVA + 0x10, 0x20);
        assertNotNull(s);
        assertEquals(memory.segment(0).address() + 0x10, s.address());
        assertEquals(0x20, s.byteSize());
        assertEquals(memory.segment(1).address(), memory.translateHva(B_HVA, B_SIZE).address());
        assertNull(memory.translateHva(B_HVA, B_SIZE + 1));
        assertNull(memory.translateHva(A_HVA + A_SIZE - 1, 2), "A and B are not adjacent in hva space");
        assertNull(memory.translateHva(A, 1), "a guest address is not a frontend address");
        assertNull(memory.translateHva(A_HVA - 1, 1));
    }

    @Test
    void shouldTranslateFrontendAddressesNear2To64() {
        assertNotNull(memory.translateHva(E_HVA, E_SIZE));
        assertEquals(memory.segment(4).address() + E_SIZE - 16, memory.translateHva(E_HVA + E_SIZE - 16, 16).address());
        assertNull(memory.translateHva(E_HVA + E_SIZE - 16, 17));
        assertNull(memory.translateHva(-16L, 64), "wraps past 2^64");
        assertNull(memory.translateHva(E_HVA, -1L));
    }

    @Test
    void shouldMapFrontendAddressesToGuestAddresses() {
        assertEquals(A + 5, memory.hvaToGpa(A_HVA + 5));
        assertEquals(B + B_SIZE - 1, memory.hvaToGpa(B_HVA + B_SIZE - 1));
        assertEquals(E + 0x10, memory.hvaToGpa(E_HVA + 0x10));
        assertEquals(-1, memory.hvaToGpa(B_HVA + B_SIZE));
        assertEquals(-1, memory.hvaToGpa(A));
    }

    @Test
    void shouldTranslateNothingInAnEmptyTable() {
        assertEquals(0, GuestMemory.EMPTY.regionCount());
        assertEquals(-1, GuestMemory.EMPTY.regionOf(0, 0));
        assertEquals(-1, GuestMemory.EMPTY.regionOf(A, 1));
        assertNull(GuestMemory.EMPTY.translate(A, 1));
        assertNull(GuestMemory.EMPTY.translateHva(A_HVA, 1));
        assertEquals(-1, GuestMemory.EMPTY.hvaToGpa(A_HVA));
    }
}
