package io.jvhost.core.memory;

import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.FileCalls;
import io.jvhost.core.sys.Mappings;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The control thread's view of the guest memory table: validates and maps regions from
 * SET_MEM_TABLE, ADD_MEM_REG and REM_MEM_REG, and publishes immutable {@link GuestMemory}
 * snapshots. Regions that leave the table are not unmapped here: the caller retires them with
 * {@link #unmapRetired()} once every poller has switched to the new snapshot.
 *
 * <p>Control thread only.
 */
public final class MemoryMap implements AutoCloseable {
    /** What QEMU 7.2 may send in one SET_MEM_TABLE. */
    public static final int MAX_TABLE_REGIONS = 8;
    /** Slots offered with CONFIGURE_MEM_SLOTS: enough for DIMM and virtio-mem hot-plug. */
    public static final int MAX_SLOTS = 509;

    private final List<MemoryRegion> regions = new ArrayList<>();
    private final List<MemoryRegion> retired = new ArrayList<>();
    private GuestMemory current = GuestMemory.EMPTY;
    /** Whether each region keeps a duplicate of its fd (for a successor process: live upgrade). */
    private final boolean keepFds;

    /** A map that keeps mappings only, closing every fd it is given. */
    public MemoryMap() {
        this(false);
    }

    /** With {@code keepFds}, each region keeps a duplicate of its fd while it is mapped ({@link MemoryRegion#fd()}). */
    public MemoryMap(boolean keepFds) {
        this.keepFds = keepFds;
    }

    /** A region description as the frontend sent it. */
    public record RegionSpec(long gpa, long size, long hva, long mmapOffset) {}

    public GuestMemory current() {
        return current;
    }

    /** Replaces the whole table (SET_MEM_TABLE). Takes ownership of {@code fds}: all are closed. */
    public void replace(List<RegionSpec> specs, Fd[] fds) throws InvalidMemoryException {
        try {
            if (specs.size() > MAX_TABLE_REGIONS || specs.size() != fds.length) {
                throw new InvalidMemoryException("memory table with " + specs.size() + " regions and "
                        + fds.length + " fds");
            }
            for (int i = 0; i < specs.size(); i++) {
                validate(specs.get(i));
                for (int j = 0; j < i; j++) {
                    RegionSpec a = specs.get(i), b = specs.get(j);
                    if (MemoryRegion.overlaps(a.gpa(), a.size(), b.gpa(), b.size())
                            && !(a.gpa() == b.gpa() && a.size() == b.size() && a.hva() == b.hva())) {
                        throw new InvalidMemoryException("overlapping regions " + a + " and " + b);
                    }
                }
            }
            List<MemoryRegion> mapped = new ArrayList<>();
            try {
                for (int i = 0; i < specs.size(); i++) {
                    RegionSpec s = specs.get(i);
                    boolean duplicate = false;
                    for (MemoryRegion m : mapped) {
                        duplicate |= m.sameAs(s.gpa(), s.size(), s.hva());
                    }
                    if (!duplicate) {
                        mapped.add(map(s, fds[i]));
                    }
                }
            } catch (InvalidMemoryException e) {
                mapped.forEach(MemoryRegion::unmap);
                throw e;
            }
            retired.addAll(regions);
            regions.clear();
            regions.addAll(mapped);
            publish();
        } finally {
            Fd.closeAll(fds);
        }
    }

    /** Adds one region (ADD_MEM_REG); an identical one only gains a reference. Closes {@code fd}. */
    public void add(RegionSpec spec, Fd fd) throws InvalidMemoryException {
        try (fd) {
            validate(spec);
            for (MemoryRegion r : regions) {
                if (r.sameAs(spec.gpa(), spec.size(), spec.hva())) {
                    r.references++;
                    return;
                }
                if (MemoryRegion.overlaps(r.gpa(), r.size(), spec.gpa(), spec.size())) {
                    throw new InvalidMemoryException("region " + spec + " overlaps " + r);
                }
            }
            if (regions.size() >= MAX_SLOTS) {
                throw new InvalidMemoryException("all " + MAX_SLOTS + " memory slots are in use");
            }
            regions.add(map(spec, fd));
            publish();
        }
    }

    /** Drops one reference to a region (REM_MEM_REG); it leaves the table at zero. */
    public void remove(RegionSpec spec) throws InvalidMemoryException {
        for (MemoryRegion r : regions) {
            if (r.gpa() == spec.gpa() && r.size() == spec.size()) {
                if (--r.references == 0) {
                    regions.remove(r);
                    retired.add(r);
                    publish();
                }
                return;
            }
        }
        throw new InvalidMemoryException("no region " + spec + " to remove");
    }

    /** Forgets every region (disconnect, reset); they are retired like removed ones. */
    public void clear() {
        retired.addAll(regions);
        regions.clear();
        publish();
    }

    /** Unmaps regions that left the table. Call only when no poller can still reach them. */
    public void unmapRetired() {
        retired.forEach(MemoryRegion::unmap);
        retired.clear();
    }

    public int size() {
        return regions.size();
    }

    /** The regions in the table now, in the order they were added. */
    public List<MemoryRegion> regions() {
        return List.copyOf(regions);
    }

    private void publish() {
        current = new GuestMemory(regions.toArray(new MemoryRegion[0]));
    }

    private static void validate(RegionSpec s) throws InvalidMemoryException {
        if (s.size() <= 0) {
            throw new InvalidMemoryException("region of size 0 or over 2^63: " + s);
        }
        if (Long.compareUnsigned(s.gpa() + s.size() - 1, s.gpa()) < 0
                || Long.compareUnsigned(s.hva() + s.size() - 1, s.hva()) < 0
                || s.mmapOffset() < 0 || s.mmapOffset() + s.size() < 0) {
            throw new InvalidMemoryException("region wraps past 2^64: " + s);
        }
    }

    private MemoryRegion map(RegionSpec s, Fd fd) throws InvalidMemoryException {
        long fileSize = FileCalls.fileSize(fd.get());
        if (fileSize < 0) {
            throw new InvalidMemoryException("fstat on region fd: errno " + -fileSize);
        }
        // Touching a mapping beyond the end of its file raises SIGBUS and would kill the process.
        if (fileSize < s.mmapOffset() + s.size()) {
            throw new InvalidMemoryException("region " + s + " extends past its file of " + fileSize + " bytes");
        }
        Arena arena = Arena.ofShared();
        try {
            MemorySegment segment = Mappings.map(fd.get(), s.mmapOffset(), s.size(), arena);
            return new MemoryRegion(s.gpa(), s.size(), s.hva(), s.mmapOffset(), segment, arena, keepFds ? fd.dup() : null);
        } catch (NativeException | ArithmeticException e) {
            arena.close();
            throw new InvalidMemoryException("cannot map region " + s + ": " + e.getMessage());
        }
    }

    @Override
    public void close() {
        clear();
        unmapRetired();
    }

    @Override
    public String toString() {
        return current.toString();
    }
}
