package io.jvhost.core.protocol;

import java.util.List;

/**
 * The payload of SET_MEM_TABLE ({@code VhostUserMemory}): a region count, padding, then that many
 * {@link RegionDescription}s, each with its own fd. Decoding checks the count against the payload
 * size and the fds, and each region's shape ({@link RegionDescription}).
 */
public record MemoryTable(List<RegionDescription> regions) {
    /** At most this many regions in one SET_MEM_TABLE (VHOST_MEMORY_BASELINE_NREGIONS). */
    public static final int MAX_REGIONS = 8;

    public MemoryTable {
        regions = List.copyOf(regions);
    }

    public static MemoryTable decode(byte[] payload, int fdCount) throws ProtocolException {
        if (payload.length < 8) {
            throw new ProtocolException("memory table of " + payload.length + " bytes");
        }
        long n = Integer.toUnsignedLong(Payload.u32(payload, 0));
        if (n > MAX_REGIONS || payload.length < 8 + RegionDescription.SIZE * n
                || payload.length > 8 + RegionDescription.SIZE * MAX_REGIONS) {
            throw new ProtocolException("memory table of " + n + " regions in " + payload.length + " bytes");
        }
        if (fdCount != n) {
            throw new ProtocolException(fdCount + " fds for " + n + " regions");
        }
        RegionDescription[] regions = new RegionDescription[(int) n];
        for (int i = 0; i < n; i++) {
            regions[i] = RegionDescription.read(payload, 8 + RegionDescription.SIZE * i);
        }
        return new MemoryTable(List.of(regions));
    }

    public byte[] encode() {
        byte[] b = new byte[8 + RegionDescription.SIZE * regions.size()];
        Payload.putU32(b, 0, regions.size());
        for (int i = 0; i < regions.size(); i++) {
            regions.get(i).write(b, 8 + RegionDescription.SIZE * i);
        }
        return b;
    }
}
