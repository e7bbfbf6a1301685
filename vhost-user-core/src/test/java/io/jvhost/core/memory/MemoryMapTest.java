package io.jvhost.core.memory;

import io.jvhost.core.memory.MemoryMap.RegionSpec;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.Mappings;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Validation and lifetime of the memory table: what SET_MEM_TABLE, ADD_MEM_REG and REM_MEM_REG
 * may not do, that every fd is closed, and that regions leaving the table stay mapped until
 * {@link MemoryMap#unmapRetired()}.
 */
class MemoryMapTest {
    private static final long FILE_SIZE = 64 * 1024;
    private static final long HVA = 0x7f00_0000_0000L;

    private Fd file;
    private Arena arena;
    private MemorySegment fileView;
    private MemoryMap map;

    @BeforeEach
    void setUp() throws Exception {
        file = Mappings.memfd("memory-map-test", FILE_SIZE);
        arena = Arena.ofShared();
        fileView = Mappings.map(file.get(), 0, FILE_SIZE, arena);
        map = new MemoryMap();
    }

    @AfterEach
    void tearDown() {
        map.close();
        arena.close();
        file.close();
    }

    private static RegionSpec spec(long gpa, long size, long mmapOffset) {
        return new RegionSpec(gpa, size, HVA + gpa, mmapOffset);
    }

    private Fd dup() throws Exception {
        return file.dup();
    }

    private Fd[] dups(int n) throws Exception {
        Fd[] fds = new Fd[n];
        for (int i = 0; i < n; i++) {
            fds[i] = dup();
        }
        return fds;
    }

    private void replace(RegionSpec... specs) throws Exception {
        map.replace(List.of(specs), dups(specs.length));
    }

    private void assertRefused(RegionSpec... specs) throws Exception {
        GuestMemory before = map.current();
        Fd[] fds = dups(specs.length);
        assertThrows(InvalidMemoryException.class, () -> map.replace(List.of(specs), fds));
        for (Fd fd : fds) {
            assertFalse(fd.isOpen(), "replace closes every fd it was given, also on failure");
        }
        assertSame(before, map.current(), "a refused table leaves the current one in place");
    }

    private void assertAddRefused(RegionSpec spec) throws Exception {
        GuestMemory before = map.current();
        Fd fd = dup();
        assertThrows(InvalidMemoryException.class, () -> map.add(spec, fd));
        assertFalse(fd.isOpen());
        assertSame(before, map.current());
    }

    // ---- mapping ----

    @Test
    void shouldMapEveryRegionOfATableOverTheSameFile() throws Exception {
        Fd[] fds = dups(2);
        map.replace(List.of(spec(0x10_0000, 0x4000, 0x1000), spec(0, 0x1000, 0x8000)), fds);
        assertFalse(fds[0].isOpen());
        assertFalse(fds[1].isOpen());
        assertEquals(2, map.size());
        GuestMemory m = map.current();
        assertEquals(2, m.regionCount());

        fileView.set(JAVA_BYTE, 0x1000 + 0x123, (byte) 11);
        fileView.set(JAVA_BYTE, 0x8000 + 0xFFF, (byte) 22);
        assertEquals(11, m.translate(0x10_0123, 1).get(JAVA_BYTE, 0));
        assertEquals(22, m.translate(0xFFF, 1).get(JAVA_BYTE, 0));
        assertEquals(11, m.translateHva(HVA + 0x10_0123, 1).get(JAVA_BYTE, 0));
        m.translate(0x10_3FFF, 1).set(JAVA_BYTE, 0, (byte) 33);
        assertEquals(33, fileView.get(JAVA_BYTE, 0x1000 + 0x3FFF));
    }

    @Test
    void shouldMapARegionAtAnUnalignedFileOffset() throws Exception {
        replace(spec(0x2000, 0x100, 0x1234));
        fileView.set(JAVA_BYTE, 0x1234, (byte) 7);
        fileView.set(JAVA_BYTE, 0x1333, (byte) 8);
        assertEquals(7, map.current().translate(0x2000, 1).get(JAVA_BYTE, 0));
        assertEquals(8, map.current().translate(0x20FF, 1).get(JAVA_BYTE, 0));
        assertEquals(0x100, map.current().segment(0).byteSize());
    }

    @Test
    void shouldMapARegionEndingExactlyAt2To64() throws Exception {
        map.replace(List.of(new RegionSpec(-0x1000L, 0x1000, -0x1000L, 0)), dups(1));
        GuestMemory m = map.current();
        assertEquals(0, m.regionOf(-1L, 1));
        m.translate(-16L, 16).set(JAVA_BYTE, 15, (byte) 99);
        assertEquals(99, fileView.get(JAVA_BYTE, 0xFFF));
        assertEquals(-1, m.regionOf(-16L, 17));
    }

    // ---- validation ----

    @Test
    void shouldRefuseARegionOfSizeZero() throws Exception {
        assertRefused(spec(0x1000, 0, 0));
        assertAddRefused(spec(0x1000, 0, 0));
    }

    @Test
    void shouldRefuseARegionOfTwoToThe63BytesOrMore() throws Exception {
        assertRefused(spec(0, Long.MIN_VALUE, 0));
        assertRefused(spec(0, -0x1000L, 0));
    }

    @Test
    void shouldRefuseARegionWhoseGuestRangeWrapsPast2To64() throws Exception {
        assertRefused(new RegionSpec(-0x1000L, 0x2000, HVA, 0));
        assertRefused(new RegionSpec(-1L, 2, HVA, 0));
        assertAddRefused(new RegionSpec(-0x1000L, 0x1001, HVA, 0));
    }

    @Test
    void shouldRefuseARegionWhoseFrontendRangeWrapsPast2To64() throws Exception {
        assertRefused(new RegionSpec(0, 0x2000, -0x1000L, 0));
        assertAddRefused(new RegionSpec(0, 0x2000, -1L, 0));
    }

    @Test
    void shouldRefuseANegativeOrOverflowingFileOffset() throws Exception {
        assertRefused(spec(0, 0x1000, -0x1000L));
        assertRefused(spec(0, 0x1000, Long.MAX_VALUE - 0x10));
        assertAddRefused(spec(0, 0x1000, Long.MIN_VALUE));
    }

    @Test
    void shouldRefuseARegionExtendingPastTheEndOfItsFile() throws Exception {
        // Touching such a mapping would raise SIGBUS and kill the process.
        assertRefused(spec(0, FILE_SIZE + 0x1000, 0));
        assertRefused(spec(0, 0x2000, FILE_SIZE - 0x1000));
        assertRefused(spec(0, 1, FILE_SIZE));
        assertRefused(spec(0, 0x1000, 0), spec(0x10_0000, 0x1000, FILE_SIZE)); // the second one
        assertAddRefused(spec(0, 0x1001, FILE_SIZE - 0x1000));
        assertEquals(0, map.size());

        replace(spec(0, 0x1000, FILE_SIZE - 0x1000), spec(0x10_0000, FILE_SIZE, 0));
        assertEquals(2, map.size());
    }

    @Test
    void shouldRefuseOverlappingRegionsInATable() throws Exception {
        assertRefused(spec(0, 0x2000, 0), spec(0x1000, 0x2000, 0));
        assertRefused(spec(0x1000, 0x2000, 0), spec(0, 0x1001, 0));
        assertRefused(spec(0, 0x4000, 0), spec(0x1000, 0x1000, 0));
        assertRefused(spec(0x1000, 0x1000, 0), spec(0, 0x4000, 0));
        assertRefused(new RegionSpec(0, 0x1000, HVA, 0), new RegionSpec(0, 0x1000, HVA + 0x10_0000, 0));
        assertRefused(new RegionSpec(-0x2000L, 0x2000, HVA, 0), new RegionSpec(-0x1000L, 0x1000, HVA + 0x10_0000, 0));
        replace(spec(0, 0x1000, 0), spec(0x1000, 0x1000, 0)); // adjacent is fine
        assertEquals(2, map.size());
    }

    @Test
    void shouldMapAnIdenticalDuplicateInATableOnce() throws Exception {
        replace(spec(0, 0x1000, 0), spec(0x4000, 0x1000, 0), spec(0, 0x1000, 0));
        assertEquals(2, map.size());
        assertEquals(2, map.current().regionCount());
    }

    @Test
    void shouldRefuseMoreThanEightRegionsInATable() throws Exception {
        List<RegionSpec> nine = new ArrayList<>();
        for (int i = 0; i < MemoryMap.MAX_TABLE_REGIONS + 1; i++) {
            nine.add(spec(0x1000L * i, 0x1000, 0x1000L * i));
        }
        assertRefused(nine.toArray(new RegionSpec[0]));
        replace(nine.subList(0, MemoryMap.MAX_TABLE_REGIONS).toArray(new RegionSpec[0]));
        assertEquals(MemoryMap.MAX_TABLE_REGIONS, map.size());
    }

    @Test
    void shouldRefuseATableWhoseFdCountDiffersFromItsRegionCount() throws Exception {
        Fd[] three = dups(3);
        assertThrows(InvalidMemoryException.class,
                () -> map.replace(List.of(spec(0, 0x1000, 0), spec(0x1000, 0x1000, 0)), three));
        for (Fd fd : three) {
            assertFalse(fd.isOpen());
        }
        Fd[] one = dups(1);
        assertThrows(InvalidMemoryException.class,
                () -> map.replace(List.of(spec(0, 0x1000, 0), spec(0x1000, 0x1000, 0)), one));
        assertFalse(one[0].isOpen());
        assertEquals(0, map.size());
    }

    // ---- add and remove ----

    @Test
    void shouldAddARegionAndCloseItsFd() throws Exception {
        replace(spec(0, 0x1000, 0));
        Fd fd = dup();
        map.add(spec(0x10_0000, 0x2000, 0x2000), fd);
        assertFalse(fd.isOpen());
        assertEquals(2, map.size());
        fileView.set(JAVA_BYTE, 0x2001, (byte) 5);
        assertEquals(5, map.current().translate(0x10_0001, 1).get(JAVA_BYTE, 0));
    }

    @Test
    void shouldRefuseAddingARegionThatOverlapsAnother() throws Exception {
        replace(spec(0x1000, 0x2000, 0));
        assertAddRefused(spec(0, 0x1001, 0));
        assertAddRefused(spec(0x2FFF, 0x10, 0));
        assertAddRefused(spec(0x1800, 0x100, 0));
        assertAddRefused(spec(0, 0x10_0000, 0));
        assertAddRefused(new RegionSpec(0x1000, 0x2000, HVA, 0)); // same range, other frontend address
        assertEquals(1, map.size());
    }

    @Test
    void shouldCountReferencesToAnIdenticalRegionAddedTwice() throws Exception {
        RegionSpec s = spec(0x4000, 0x1000, 0x1000);
        map.add(s, dup());
        GuestMemory once = map.current();
        Fd second = dup();
        map.add(s, second);
        assertFalse(second.isOpen());
        assertSame(once, map.current(), "a second reference changes nothing visible");
        assertEquals(1, map.size());

        map.remove(s);
        assertSame(once, map.current(), "one reference remains");
        assertEquals(1, map.size());
        map.unmapRetired();
        assertTrue(once.segment(0).scope().isAlive());

        map.remove(s);
        assertEquals(0, map.size());
        assertEquals(0, map.current().regionCount());
        assertThrows(InvalidMemoryException.class, () -> map.remove(s));
    }

    @Test
    void shouldRefuseRemovingARegionThatIsNotInTheTable() throws Exception {
        replace(spec(0, 0x2000, 0));
        assertThrows(InvalidMemoryException.class, () -> map.remove(spec(0, 0x1000, 0)));
        assertThrows(InvalidMemoryException.class, () -> map.remove(spec(0x1000, 0x2000, 0)));
        assertEquals(1, map.size());
    }

    @Test
    void shouldRefuseARegionBeyondTheLastSlot() throws Exception {
        for (int i = 0; i < MemoryMap.MAX_SLOTS; i++) {
            map.add(spec(0x1000L * i, 0x1000, 0), dup());
        }
        assertEquals(MemoryMap.MAX_SLOTS, map.size());
        assertAddRefused(spec(0x1000L * MemoryMap.MAX_SLOTS, 0x1000, 0));
        map.add(spec(0, 0x1000, 0), dup()); // another reference still fits
        assertEquals(MemoryMap.MAX_SLOTS, map.size());
    }

    // ---- retiring ----

    @Test
    void shouldKeepReplacedRegionsMappedUntilUnmapRetired() throws Exception {
        replace(spec(0, 0x1000, 0), spec(0x1000, 0x1000, 0x1000));
        GuestMemory old = map.current();
        replace(spec(0, 0x2000, 0x4000));
        GuestMemory now = map.current();

        assertTrue(old.segment(0).scope().isAlive(), "a poller may still be reading the old table");
        old.segment(1).set(JAVA_BYTE, 0, (byte) 1);
        map.unmapRetired();
        assertFalse(old.segment(0).scope().isAlive());
        assertFalse(old.segment(1).scope().isAlive());
        assertTrue(now.segment(0).scope().isAlive());
        map.unmapRetired();
        assertTrue(now.segment(0).scope().isAlive());
    }

    @Test
    void shouldKeepARemovedRegionMappedUntilUnmapRetired() throws Exception {
        replace(spec(0, 0x1000, 0), spec(0x1000, 0x1000, 0x1000));
        GuestMemory old = map.current();
        map.remove(spec(0x1000, 0x1000, 0));
        assertEquals(1, map.current().regionCount());
        assertTrue(old.segment(1).scope().isAlive());
        map.unmapRetired();
        assertFalse(old.segment(1).scope().isAlive());
        assertTrue(old.segment(0).scope().isAlive(), "the remaining region is still in the table");
    }

    @Test
    void shouldKeepClearedRegionsMappedUntilUnmapRetiredAndUnmapAllOnClose() throws Exception {
        replace(spec(0, 0x1000, 0));
        GuestMemory first = map.current();
        map.clear();
        assertEquals(0, map.current().regionCount());
        assertTrue(first.segment(0).scope().isAlive());
        map.unmapRetired();
        assertFalse(first.segment(0).scope().isAlive());

        replace(spec(0, 0x1000, 0));
        GuestMemory second = map.current();
        map.add(spec(0x1000, 0x1000, 0), dup());
        GuestMemory third = map.current();
        map.close();
        assertFalse(second.segment(0).scope().isAlive());
        assertFalse(third.segment(1).scope().isAlive());
    }

    @Test
    void shouldNotUnmapTheCurrentTableWhenAReplaceIsRefused() throws Exception {
        replace(spec(0, 0x1000, 0));
        GuestMemory current = map.current();
        assertRefused(spec(0x10_0000, 0x1000, 0), spec(0x20_0000, 0x1000, FILE_SIZE));
        map.unmapRetired();
        assertTrue(current.segment(0).scope().isAlive());
        assertNotNull(map.current().translate(0, 0x1000));
    }
}
