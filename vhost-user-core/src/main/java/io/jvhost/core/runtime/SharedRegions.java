package io.jvhost.core.runtime;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.memory.InvalidMemoryException;
import io.jvhost.core.memory.MemoryMap;
import io.jvhost.core.memory.MemoryMap.RegionSpec;
import io.jvhost.core.memory.MemoryRegion;
import io.jvhost.core.protocol.Header;
import io.jvhost.core.protocol.Message;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.protocol.InflightRequest;
import io.jvhost.core.protocol.LogBase;
import io.jvhost.core.protocol.MemoryTable;
import io.jvhost.core.protocol.ProtocolException;
import io.jvhost.core.protocol.RegionDescription;
import io.jvhost.core.ring.InflightLog;
import io.jvhost.core.ring.PackedInflightLog;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.FileCalls;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.Mappings;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The memory one frontend shares with this backend: the guest memory table (SET_MEM_TABLE,
 * ADD_MEM_REG, REM_MEM_REG), the dirty log of a migration (SET_LOG_BASE) and the inflight region
 * (GET/SET_INFLIGHT_FD). What a change replaces is released only after the pollers have moved
 * on: memory through {@link #unmapRetired()}, the log and inflight mappings through the
 * exchange's after-acks actions. The caller reconfigures the running queues in between.
 *
 * <p>Control thread only.
 */
final class SharedRegions implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(SharedRegions.class);

    private final String name;
    private final MemoryMap memory;
    /** Whether the fds of the inflight region and the log are kept for a successor (live upgrade). */
    private final boolean keepFds;
    /** The dirty log from SET_LOG_BASE; written only while LOG_ALL is acked. */
    private DirtyLog dirtyLog;
    private Arena logArena;
    /** The log's fd and layout, kept for a successor (live upgrade); null without a log. */
    private Fd logFd;
    private LogBase logBase;
    /**
     * The inflight region: per queue {@link InflightLog#queueRegionSize} bytes (split rings) or
     * {@link PackedInflightLog#queueRegionSize} (packed); null until given.
     */
    private MemorySegment inflightRegion;
    private Arena inflightArena;
    private int inflightQueues, inflightQueueSize;
    /** The inflight region's fd and layout, kept for a successor (live upgrade); null until given. */
    private Fd inflightFd;
    private InflightRequest inflightLayout;

    SharedRegions(String name, boolean keepFds) {
        this.name = name;
        this.keepFds = keepFds;
        this.memory = new MemoryMap(keepFds);
    }

    MemoryMap memory() {
        return memory;
    }

    GuestMemory guestMemory() {
        return memory.current();
    }

    boolean hasMemory() {
        return memory.size() > 0;
    }

    DirtyLog dirtyLog() {
        return dirtyLog;
    }

    private static RegionSpec spec(RegionDescription r) {
        return new RegionSpec(r.gpa(), r.size(), r.hva(), r.mmapOffset());
    }

    /** SET_MEM_TABLE: maps the new table (closing {@code fds}); the old regions wait for {@link #unmapRetired()}. */
    void setMemTable(MemoryTable table, Fd[] fds) throws ProtocolException {
        RegionSpec[] specs = new RegionSpec[table.regions().size()];
        for (int i = 0; i < specs.length; i++) {
            specs[i] = spec(table.regions().get(i));
        }
        try {
            memory.replace(List.of(specs), fds);
        } catch (InvalidMemoryException e) {
            throw new ProtocolException(e.getMessage());
        }
        LOG.info("{}: memory table {}", name, memory);
    }

    /** ADD_MEM_REG; closes {@code fd}. */
    void addRegion(RegionDescription region, Fd fd) throws ProtocolException {
        try {
            memory.add(spec(region), fd);
        } catch (InvalidMemoryException e) {
            throw new ProtocolException(e.getMessage());
        }
    }

    /** REM_MEM_REG. */
    void removeRegion(RegionDescription region) throws ProtocolException {
        try {
            memory.remove(spec(region));
        } catch (InvalidMemoryException e) {
            throw new ProtocolException(e.getMessage());
        }
    }

    /** Unmaps the regions that left the table. Only once no poller can reach them. */
    void unmapRetired() {
        memory.unmapRetired();
    }

    /** SET_LOG_BASE: maps the frontend's dirty bitmap from {@code fd} (closed here). */
    void setLog(Exchange x, LogBase log, Fd fd) throws ProtocolException {
        try (fd) {
            long fileSize = FileCalls.fileSize(fd.get());
            if (fileSize < log.offset() + log.size()) {
                throw new ProtocolException("log of " + log.size() + " bytes at " + log.offset() + " in a file of " + fileSize);
            }
            Arena arena = Arena.ofShared();
            try {
                DirtyLog mapped = new DirtyLog(Mappings.map(fd.get(), log.offset(), log.size(), arena));
                Fd kept = keepFds ? fd.dup() : null;
                retireAfterAcks(x, logArena);
                closeAfterAcks(x, logFd);
                dirtyLog = mapped;
                logArena = arena;
                logFd = kept;
                logBase = log;
            } catch (NativeException e) {
                arena.close();
                throw new ProtocolException("cannot map the log: " + e.getMessage());
            }
        }
        LOG.info("{}: dirty log of {} bytes (migration)", name, log.size());
    }

    /** Bytes per queue of an inflight region for queues of {@code queueSize} in the layout {@code packed} says. */
    static long inflightQueueBytes(int queueSize, boolean packed) {
        return packed ? PackedInflightLog.queueRegionSize(queueSize) : InflightLog.queueRegionSize(queueSize);
    }

    /**
     * GET_INFLIGHT_FD: a fresh, zeroed region for {@code r} (QEMU asks again after every guest
     * reset), laid out for packed or split rings as the features negotiated so far say (QEMU 7.2
     * sends SET_FEATURES first), and the reply with its layout and memfd; our mapping stays once
     * that fd is closed. A frontend that negotiates RING_PACKED only afterwards gets a region too
     * small for it: its queues then run untracked, with a warning.
     */
    void createInflight(Exchange x, InflightRequest r, boolean packed) throws ProtocolException {
        long perQueue = inflightQueueBytes(r.queueSize(), packed);
        long total = perQueue * r.queues();
        Fd fd = null;
        Arena arena = Arena.ofShared();
        try {
            fd = Mappings.memfd("jvhost-inflight", total);
            MemorySegment region = Mappings.map(fd.get(), 0, total, arena);
            for (int q = 0; q < r.queues(); q++) {
                MemorySegment slice = region.asSlice(q * perQueue, perQueue);
                if (packed) {
                    PackedInflightLog.initialize(slice, r.queueSize());
                } else {
                    InflightLog.initialize(slice, r.queueSize());
                }
            }
            InflightRequest layout = new InflightRequest(total, 0, r.queues(), r.queueSize());
            useInflight(x, region, arena, r.queues(), r.queueSize(), keepFds ? fd.dup() : null, layout);
            x.reply(layout.encode(), fd);
        } catch (NativeException e) {
            arena.close();
            if (fd != null) {
                fd.close();
            }
            throw new ProtocolException("cannot create the inflight region: " + e.getMessage(), true);
        }
    }

    /**
     * SET_INFLIGHT_FD: the region from an earlier backend (after a crash) or from GET_INFLIGHT_FD;
     * requests in it resume. At least what split rings need must be there; whether a packed
     * layout fits is checked per queue when it starts.
     */
    void setInflight(Exchange x, InflightRequest r, Fd fd) throws ProtocolException {
        try (fd) {
            long need = InflightLog.queueRegionSize(r.queueSize()) * r.queues();
            if (r.mmapSize() < need || r.mmapOffset() < 0 || r.mmapOffset() + r.mmapSize() < 0) {
                throw new ProtocolException("inflight region of " + r.mmapSize() + " bytes, need " + need);
            }
            if ((r.mmapOffset() & 7) != 0) { // its counters and indexes are read with aligned accesses
                throw new ProtocolException("inflight region at offset " + r.mmapOffset() + ": not a multiple of 8");
            }
            long fileSize = FileCalls.fileSize(fd.get());
            if (fileSize < r.mmapOffset() + need) {
                throw new ProtocolException("inflight fd holds " + fileSize + " bytes, need " + (r.mmapOffset() + need));
            }
            long mapped = Math.min(r.mmapSize(), fileSize - r.mmapOffset());
            Arena arena = Arena.ofShared();
            try {
                useInflight(x, Mappings.map(fd.get(), r.mmapOffset(), mapped, arena), arena, r.queues(), r.queueSize(),
                        keepFds ? fd.dup() : null, r);
                LOG.info("{}: inflight region for {} queues of {} from the frontend", name, r.queues(), r.queueSize());
            } catch (NativeException e) {
                arena.close();
                throw new ProtocolException("cannot map the inflight region: " + e.getMessage());
            }
        }
    }

    private void useInflight(Exchange x, MemorySegment region, Arena arena, int queues, int queueSize, Fd fd,
                             InflightRequest layout) {
        retireAfterAcks(x, inflightArena); // unmapped once no poller writes to it
        closeAfterAcks(x, inflightFd);
        inflightFd = fd;
        inflightLayout = layout;
        inflightRegion = region;
        inflightArena = arena;
        inflightQueues = queues;
        inflightQueueSize = queueSize;
    }

    private static void closeAfterAcks(Exchange x, Fd old) {
        if (old != null) {
            x.afterAcks(old::close);
        }
    }

    /**
     * The messages that rebuild these regions in a successor process (live upgrade): the memory
     * table (SET_MEM_TABLE, or ADD_MEM_REG per region beyond its 8), the inflight region
     * (SET_INFLIGHT_FD) and the dirty log (SET_LOG_BASE), each with a duplicate of its fd.
     */
    void handoverMessages(List<Message> out) throws NativeException {
        if (!keepFds) {
            throw new NativeException("this backend keeps no fds to hand over (Backend.keepFdsForHandover)", LibC.EBADF);
        }
        List<MemoryRegion> regions = memory.regions();
        boolean table = regions.size() <= MemoryTable.MAX_REGIONS && regions.stream().allMatch(r -> r.references() == 1);
        if (table && !regions.isEmpty()) {
            List<RegionDescription> descriptions = new java.util.ArrayList<>();
            Fd[] fds = new Fd[regions.size()];
            for (int i = 0; i < fds.length; i++) {
                MemoryRegion r = regions.get(i);
                descriptions.add(new RegionDescription(r.gpa(), r.size(), r.hva(), r.mmapOffset()));
                fds[i] = r.fd().dup();
            }
            out.add(new Message(MessageType.SET_MEM_TABLE, Header.VERSION, new MemoryTable(descriptions).encode(), fds));
        } else {
            for (MemoryRegion r : regions) {
                for (int n = 0; n < r.references(); n++) {
                    byte[] p = new RegionDescription(r.gpa(), r.size(), r.hva(), r.mmapOffset()).encodeSingle();
                    out.add(new Message(MessageType.ADD_MEM_REG, Header.VERSION, p, new Fd[] {r.fd().dup()}));
                }
            }
        }
        if (inflightFd != null) {
            out.add(new Message(MessageType.SET_INFLIGHT_FD, Header.VERSION, inflightLayout.encode(), new Fd[] {inflightFd.dup()}));
        }
        if (logFd != null) {
            out.add(new Message(MessageType.SET_LOG_BASE, Header.VERSION, logBase.encode(), new Fd[] {logFd.dup()}));
        }
    }

    private static void retireAfterAcks(Exchange x, Arena old) {
        if (old != null) {
            x.afterAcks(old::close);
        }
    }

    /**
     * Queue {@code index}'s slice of the inflight region in the layout {@code packed} says, or
     * null: none given, made for another queue size, or too small for that layout.
     */
    MemorySegment inflightFor(int index, int queueSize, boolean packed) {
        if (inflightRegion == null || index >= inflightQueues) {
            return null;
        }
        if (queueSize != inflightQueueSize) {
            LOG.warn("{}: queue {} has size {} but the inflight region was made for {}; not tracking it",
                    name, index, queueSize, inflightQueueSize);
            return null;
        }
        long per = inflightQueueBytes(inflightQueueSize, packed);
        if (inflightRegion.byteSize() < per * inflightQueues) {
            LOG.warn("{}: the inflight region of {} bytes is too small for {} packed queues of {}; not tracking queue {}",
                    name, inflightRegion.byteSize(), inflightQueues, inflightQueueSize, index);
            return null;
        }
        return inflightRegion.asSlice(index * per, per);
    }

    /** Unmaps everything. Only once no poller runs a queue of this session. */
    @Override
    public void close() {
        memory.close();
        if (inflightArena != null) {
            inflightArena.close();
        }
        if (logArena != null) {
            logArena.close();
        }
        for (Fd fd : new Fd[] {inflightFd, logFd}) {
            if (fd != null) {
                fd.close();
            }
        }
    }
}
