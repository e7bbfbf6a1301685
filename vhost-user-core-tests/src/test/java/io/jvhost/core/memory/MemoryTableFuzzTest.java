package io.jvhost.core.memory;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.core.memory.MemoryMap.RegionSpec;
import io.jvhost.core.protocol.MemoryTable;
import io.jvhost.core.protocol.ProtocolException;
import io.jvhost.core.protocol.RegionDescription;
import io.jvhost.core.protocol.VringAddress;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.Mappings;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * Coverage-guided fuzzing (Jazzer) of memory-table and vring-address validation: sequences of
 * SET_MEM_TABLE / ADD_MEM_REG / REM_MEM_REG region specs (any gpa, size, hva and file offset: overlaps,
 * duplicates, wraps past 2^64, ranges past the file), encoded as their payloads, decoded by the
 * protocol codec ({@link MemoryTable}, {@link RegionDescription}) and applied to a {@link MemoryMap}
 * over a 64 KiB memfd as the runtime applies them; guest-physical and frontend-virtual lookups in the
 * result; and a SET_VRING_ADDR payload decoded by {@link VringAddress#decode} whose rings are then
 * translated through the {@link GuestMemory} as a starting queue's are. Pure: no session, no backend.
 *
 * <p>A finding is any exception but {@link InvalidMemoryException} or {@link ProtocolException}, a
 * refused table that changed the
 * current one, an fd left open, a table with a region that overlaps another, wraps or reaches past
 * its file, a mapping at the wrong file offset, a lookup that answers differently from exact
 * arithmetic, a slice of the wrong length or outside its region, or SET_VRING_ADDR decoding a
 * misaligned ring (desc 16, avail 2, used 4), unknown flags, a wrong size or an fd, or refusing a
 * good one. (The queue index is checked against the device's queue count by {@code runtime.Vrings};
 * {@code runtime.SessionFuzzTest} reaches that.)
 *
 * <p>Kept inputs: {@code src/test/resources/io/jvhost/core/memory/MemoryTableFuzzTestInputs/}.
 */
class MemoryTableFuzzTest {
    static final long FILE = 64 * 1024;
    static final long HVA = 0x7f00_0000_0000L;
    private static final BigInteger TWO_64 = BigInteger.ONE.shiftLeft(64);
    private static Fd file;
    private static Arena arena;
    /** The memfd as the frontend sees it: what a region's mapping must alias. */
    private static MemorySegment fileView;

    @BeforeAll
    static void createFile() throws NativeException {
        file = Mappings.memfd("memory-table-fuzz", FILE);
        arena = Arena.ofShared();
        fileView = Mappings.map(file.get(), 0, FILE, arena);
    }

    @AfterAll
    static void closeFile() {
        arena.close();
        file.close();
    }

    @FuzzTest
    void shouldMapOnlyValidTablesAndTranslateOnlyInsideThem(FuzzedDataProvider data) throws NativeException {
        try (MemoryMap map = new MemoryMap()) {
            List<RegionSpec> known = new ArrayList<>();
            int ops = data.consumeInt(1, 4);
            for (int op = 0; op < ops; op++) {
                GuestMemory before = map.current();
                Fd[] fds;
                try {
                    switch (data.consumeInt(0, 2)) {
                        case 0 -> {
                            int n = data.consumeInt(0, MemoryMap.MAX_TABLE_REGIONS + 1);
                            List<RegionSpec> specs = new ArrayList<>();
                            for (int i = 0; i < n; i++) {
                                specs.add(spec(data, known));
                            }
                            fds = dups(data.consumeInt(0, 7) == 0 ? data.consumeInt(0, n + 1) : n);
                            known.addAll(specs);
                            applyTable(map, specs, fds);
                        }
                        case 1 -> {
                            RegionSpec s = spec(data, known);
                            fds = dups(1);
                            known.add(s);
                            addRegion(map, s, fds[0]);
                        }
                        default -> {
                            RegionSpec s = data.consumeBoolean() && !known.isEmpty()
                                    ? known.get(data.consumeInt(0, known.size() - 1)) : spec(data, known);
                            fds = new Fd[0];
                            removeRegion(map, s);
                        }
                    }
                } catch (InvalidMemoryException | ProtocolException e) {
                    if (map.current() != before) {
                        throw new AssertionError("a refused change replaced the table: " + e.getMessage());
                    }
                    continue;
                } finally {
                    map.unmapRetired(); // no poller here: retired regions can go at once
                }
                for (Fd fd : fds) {
                    if (fd.isOpen()) {
                        throw new AssertionError("memory map kept fd " + fd + " open");
                    }
                }
                checkTable(map.current());
            }
            GuestMemory mem = map.current();
            int lookups = data.consumeInt(0, 8);
            for (int i = 0; i < lookups; i++) {
                checkLookup(mem, address(data, known, false), length(data), address(data, known, true));
            }
            checkVringAddress(data, mem, known);
        }
    }

    // ---- adapter: the only calls into the code under test ----

    private static RegionDescription description(RegionSpec s) {
        return new RegionDescription(s.gpa(), s.size(), s.hva(), s.mmapOffset());
    }

    private static RegionSpec spec(RegionDescription r) {
        return new RegionSpec(r.gpa(), r.size(), r.hva(), r.mmapOffset());
    }

    /** Closes fds a refused payload came with, as the runtime's exchange does. */
    private static ProtocolException refused(ProtocolException e, Fd... fds) {
        for (Fd fd : fds) {
            fd.close();
        }
        return e;
    }

    /**
     * SET_MEM_TABLE: the payload {@link MemoryTable#encode} gives for {@code specs} (more than the
     * codec allows when asked), {@link MemoryTable#decode}d with {@code fds}, then
     * {@link MemoryMap#replace} as runtime.SharedRegions does.
     */
    static void applyTable(MemoryMap map, List<RegionSpec> specs, Fd[] fds) throws InvalidMemoryException, ProtocolException {
        MemoryTable table;
        try {
            table = MemoryTable.decode(new MemoryTable(specs.stream().map(MemoryTableFuzzTest::description).toList()).encode(),
                    fds.length);
        } catch (ProtocolException e) {
            throw refused(e, fds);
        }
        map.replace(table.regions().stream().map(MemoryTableFuzzTest::spec).toList(), fds);
    }

    /** ADD_MEM_REG: {@link RegionDescription#decodeAdd}, then {@link MemoryMap#add}. */
    static void addRegion(MemoryMap map, RegionSpec spec, Fd fd) throws InvalidMemoryException, ProtocolException {
        RegionDescription r;
        try {
            r = RegionDescription.decodeAdd(description(spec).encodeSingle(), 1);
        } catch (ProtocolException e) {
            throw refused(e, fd);
        }
        map.add(spec(r), fd);
    }

    /** REM_MEM_REG: {@link RegionDescription#decodeRemove}, then {@link MemoryMap#remove}. */
    static void removeRegion(MemoryMap map, RegionSpec spec) throws InvalidMemoryException, ProtocolException {
        map.remove(spec(RegionDescription.decodeRemove(description(spec).encodeSingle(), 0)));
    }

    /** SET_VRING_ADDR: whether {@link VringAddress#decode} accepts the payload with {@code fdCount} fds. */
    static VringAddress decodeVringAddress(byte[] payload, int fdCount) {
        try {
            return VringAddress.decode(payload, fdCount);
        } catch (ProtocolException e) {
            return null;
        }
    }

    /** How runtime.Vrings translates a starting queue's rings (private there, so mirrored). */
    static MemorySegment[] translateRings(GuestMemory mem, VringAddress a, int num) {
        return new MemorySegment[] {mem.translateHva(a.descHva(), 16L * num), mem.translateHva(a.availHva(), 6 + 2L * num),
            mem.translateHva(a.usedHva(), 6 + 8L * num)};
    }

    // ---- inputs ----

    private static Fd[] dups(int n) throws NativeException {
        Fd[] fds = new Fd[n];
        for (int i = 0; i < n; i++) {
            fds[i] = file.dup();
        }
        return fds;
    }

    private static RegionSpec spec(FuzzedDataProvider data, List<RegionSpec> known) {
        RegionSpec like = known.isEmpty() ? null : known.get(data.consumeInt(0, known.size() - 1));
        long size = switch (data.consumeInt(0, 5)) {
            case 0 -> data.consumeLong(1, FILE);
            case 1 -> FILE;
            case 2 -> like != null ? like.size() : 4096;
            case 3 -> data.consumeLong(FILE, FILE + 4096);
            case 4 -> 4096L * data.consumeInt(1, 16);
            default -> data.consumeLong();
        };
        long gpa = switch (data.consumeInt(0, 5)) {
            case 0 -> 4096L * data.consumeInt(0, 64);
            case 1 -> like != null ? like.gpa() + like.size() + data.consumeInt(-2, 2) : 0;
            case 2 -> like != null ? like.gpa() + data.consumeLong(-FILE, FILE) : 0;
            case 3 -> -size + data.consumeInt(-2, 2); // ends at 2^64
            case 4 -> like != null ? like.gpa() : 0;
            default -> data.consumeLong();
        };
        long hva = switch (data.consumeInt(0, 3)) {
            case 0 -> HVA + gpa;
            case 1 -> like != null ? like.hva() : HVA;
            case 2 -> -size + data.consumeInt(-2, 2);
            default -> data.consumeLong();
        };
        long offset = switch (data.consumeInt(0, 3)) {
            case 0 -> 0;
            case 1 -> data.consumeLong(0, FILE);
            case 2 -> FILE - size + data.consumeInt(-1, 1);
            default -> data.consumeLong();
        };
        return new RegionSpec(gpa, size, hva, offset);
    }

    private static long address(FuzzedDataProvider data, List<RegionSpec> known, boolean hva) {
        if (!known.isEmpty() && data.consumeInt(0, 3) != 0) {
            RegionSpec s = known.get(data.consumeInt(0, known.size() - 1));
            long base = hva ? s.hva() : s.gpa();
            return switch (data.consumeInt(0, 2)) {
                case 0 -> base + data.consumeLong(-16, 16);
                case 1 -> base + s.size() + data.consumeLong(-16, 16);
                default -> base + data.consumeLong(0, Math.max(0, s.size()));
            };
        }
        return data.consumeLong();
    }

    private static long length(FuzzedDataProvider data) {
        return switch (data.consumeInt(0, 3)) {
            case 0 -> data.consumeLong(0, 64);
            case 1 -> data.consumeLong(0, 2 * FILE);
            case 2 -> -data.consumeLong(0, 64); // 2^64 - n, unsigned
            default -> data.consumeLong();
        };
    }

    // ---- oracles ----

    private static BigInteger u(long v) {
        return v >= 0 ? BigInteger.valueOf(v) : BigInteger.valueOf(v).add(TWO_64);
    }

    /** Whether [start, start + size) holds [address, address + length), in exact arithmetic. */
    private static boolean holds(long start, long size, long address, long length) {
        BigInteger a = u(address);
        return a.compareTo(u(start)) >= 0 && a.add(u(length)).compareTo(u(start).add(u(size))) <= 0;
    }

    private static void checkTable(GuestMemory mem) {
        for (int i = 0; i < mem.regionCount(); i++) {
            MemoryRegion r = mem.region(i);
            if (r.size() <= 0 || u(r.gpa()).add(u(r.size())).compareTo(TWO_64) > 0
                    || u(r.hva()).add(u(r.size())).compareTo(TWO_64) > 0) {
                throw new AssertionError("region of bad size or wrapping past 2^64 accepted: " + r);
            }
            if (r.mmapOffset() < 0 || r.mmapOffset() + r.size() > FILE || r.mmapOffset() + r.size() < 0) {
                throw new AssertionError("region reaching past its file accepted: " + r);
            }
            MemorySegment s = mem.segment(i);
            if (s.byteSize() != r.size() || mem.gpaBase(i) != r.gpa()) {
                throw new AssertionError("region " + r + " mapped as " + s.byteSize() + " bytes at gpa " + mem.gpaBase(i));
            }
            // The mapping shows the file at mmapOffset: a byte written through it is in the file there.
            for (long at : new long[] {0, r.size() - 1}) {
                byte mark = (byte) (at * 31 + i + 1);
                s.set(JAVA_BYTE, at, mark);
                if (fileView.get(JAVA_BYTE, r.mmapOffset() + at) != mark) {
                    throw new AssertionError("region " + r + " is not mapped at its file offset");
                }
            }
            if (i > 0 && Long.compareUnsigned(mem.gpaBase(i - 1), r.gpa()) >= 0) {
                throw new AssertionError("regions not sorted by gpa: " + mem);
            }
            for (int j = 0; j < i; j++) {
                MemoryRegion o = mem.region(j);
                if (holds(o.gpa(), o.size(), r.gpa(), 1) || holds(r.gpa(), r.size(), o.gpa(), 1)) {
                    throw new AssertionError("overlapping regions accepted: " + o + " and " + r);
                }
            }
        }
    }

    private static void checkLookup(GuestMemory mem, long gpa, long length, long hva) {
        boolean anyGpa = false, anyHva = false;
        for (int i = 0; i < mem.regionCount(); i++) {
            MemoryRegion r = mem.region(i);
            anyGpa |= holds(r.gpa(), r.size(), gpa, length);
            anyHva |= holds(r.hva(), r.size(), hva, length);
        }
        int index = mem.regionOf(gpa, length);
        MemorySegment slice = mem.translate(gpa, length);
        if ((index >= 0) != anyGpa || (slice != null) != anyGpa) {
            throw new AssertionError(String.format("gpa 0x%x+0x%x: regionOf %d, translate %s, but in a region: %b (%s)",
                    gpa, length, index, slice, anyGpa, mem));
        }
        if (slice != null) {
            MemoryRegion r = mem.region(index);
            if (!holds(r.gpa(), r.size(), gpa, length) || slice.byteSize() != length
                    || slice.address() - mem.segment(index).address() != gpa - r.gpa()) {
                throw new AssertionError(String.format("gpa 0x%x+0x%x translated to the wrong bytes of %s", gpa, length, r));
            }
        }
        checkHva(mem, hva, length, mem.translateHva(hva, length), anyHva);
        long toGpa = mem.hvaToGpa(hva);
        boolean anyByte = false;
        for (int i = 0; i < mem.regionCount(); i++) {
            MemoryRegion r = mem.region(i);
            if (holds(r.hva(), r.size(), hva, 1)) {
                anyByte = true;
                if (toGpa == r.gpa() + (hva - r.hva())) {
                    return;
                }
            }
        }
        if (anyByte || toGpa != -1) {
            throw new AssertionError(String.format("hva 0x%x: hvaToGpa 0x%x (%s)", hva, toGpa, mem));
        }
    }

    private static void checkHva(GuestMemory mem, long hva, long length, MemorySegment slice, boolean expected) {
        if ((slice != null) != expected) {
            throw new AssertionError(String.format("hva 0x%x+0x%x: translateHva %s, but in a region: %b (%s)",
                    hva, length, slice, expected, mem));
        }
        if (slice == null) {
            return;
        }
        for (int i = 0; i < mem.regionCount(); i++) {
            MemoryRegion r = mem.region(i);
            if (holds(r.hva(), r.size(), hva, length) && slice.byteSize() == length
                    && slice.address() - mem.segment(i).address() == hva - r.hva()) {
                return;
            }
        }
        throw new AssertionError(String.format("hva 0x%x+0x%x translated outside every region that holds it", hva, length));
    }

    private static void checkVringAddress(FuzzedDataProvider data, GuestMemory mem, List<RegionSpec> known) {
        int index = data.consumeInt(0, 7) == 0 ? data.consumeInt() : data.consumeInt(0, 2);
        int flags = data.consumeInt(0, 7) == 0 ? data.consumeInt() : data.consumeInt(0, 1);
        long desc = address(data, known, true), used = address(data, known, true), avail = address(data, known, true);
        long log = data.consumeLong();
        int payloadSize = data.consumeInt(0, 15) == 0 ? data.consumeInt(0, 48) : 40;
        int fdCount = data.consumeInt(0, 15) == 0 ? 1 : 0;
        int num = 1 << data.consumeInt(0, 15);
        ByteBuffer b = ByteBuffer.allocate(Math.max(40, payloadSize)).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(index).putInt(flags).putLong(desc).putLong(used).putLong(avail).putLong(log);
        byte[] payload = java.util.Arrays.copyOf(b.array(), payloadSize);
        boolean valid = payloadSize == 40 && fdCount == 0 && (flags & ~1) == 0
                && (desc & 15) == 0 && (avail & 1) == 0 && (used & 3) == 0;
        VringAddress a = decodeVringAddress(payload, fdCount);
        if ((a != null) != valid) {
            throw new AssertionError(String.format("SET_VRING_ADDR index %d flags 0x%x desc 0x%x used 0x%x avail 0x%x"
                    + " (%d bytes, %d fds): %s, expected %s", index, flags, desc, used, avail, payloadSize, fdCount,
                    a != null ? "accepted" : "refused", valid ? "accepted" : "refused"));
        }
        if (!valid) {
            return;
        }
        if (a.index() != Integer.toUnsignedLong(index) || a.flags() != flags || a.descHva() != desc || a.usedHva() != used
                || a.availHva() != avail || a.logGpa() != log) {
            throw new AssertionError("SET_VRING_ADDR decoded as " + a);
        }
        MemorySegment[] rings = translateRings(mem, a, num);
        long[] hvas = {desc, avail, used};
        long[] lengths = {16L * num, 6 + 2L * num, 6 + 8L * num};
        for (int i = 0; i < 3; i++) {
            boolean inside = false;
            for (int r = 0; r < mem.regionCount(); r++) {
                inside |= holds(mem.region(r).hva(), mem.region(r).size(), hvas[i], lengths[i]);
            }
            checkHva(mem, hvas[i], lengths[i], rings[i], inside);
        }
    }
}
