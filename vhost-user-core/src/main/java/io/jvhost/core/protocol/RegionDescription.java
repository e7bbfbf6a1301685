package io.jvhost.core.protocol;

/**
 * One memory region description ({@code VhostUserMemoryRegion}): guest-physical address, size,
 * the frontend's virtual address of it, and the offset of the region in the fd that comes with it.
 * Decoding checks the region's shape: a size of 1 byte to 2^63, and no address range or file
 * range that wraps; whether the file is that large is for whoever maps it.
 */
public record RegionDescription(long gpa, long size, long hva, long mmapOffset) {
    public static final int SIZE = 32;
    /** ADD_MEM_REG and REM_MEM_REG: 8 bytes of padding, then one region. */
    public static final int SINGLE_REGION_SIZE = 8 + SIZE;

    /** The region at {@code offset} of {@code payload} (which holds it), checked. */
    static RegionDescription read(byte[] payload, int offset) throws ProtocolException {
        RegionDescription r = new RegionDescription(Payload.u64(payload, offset), Payload.u64(payload, offset + 8),
                Payload.u64(payload, offset + 16), Payload.u64(payload, offset + 24));
        if (r.size <= 0) {
            throw new ProtocolException("region of size 0 or over 2^63: " + r);
        }
        if (Long.compareUnsigned(r.gpa + r.size - 1, r.gpa) < 0 || Long.compareUnsigned(r.hva + r.size - 1, r.hva) < 0
                || r.mmapOffset < 0 || r.mmapOffset + r.size < 0) {
            throw new ProtocolException("region wraps past 2^64: " + r);
        }
        return r;
    }

    /** ADD_MEM_REG: one region and its fd. */
    public static RegionDescription decodeAdd(byte[] payload, int fdCount) throws ProtocolException {
        Payload.expect(payload, fdCount, SINGLE_REGION_SIZE, 1);
        return read(payload, 8);
    }

    /** REM_MEM_REG: one region, with its fd or without (QEMU sends it along). */
    public static RegionDescription decodeRemove(byte[] payload, int fdCount) throws ProtocolException {
        if (payload.length != SINGLE_REGION_SIZE || fdCount > 1) {
            throw new ProtocolException("REM_MEM_REG of " + payload.length + " bytes with " + fdCount + " fds");
        }
        return read(payload, 8);
    }

    /** Writes the region at {@code offset} of {@code payload}. */
    void write(byte[] payload, int offset) {
        Payload.putU64(payload, offset, gpa);
        Payload.putU64(payload, offset + 8, size);
        Payload.putU64(payload, offset + 16, hva);
        Payload.putU64(payload, offset + 24, mmapOffset);
    }

    /** The ADD_MEM_REG / REM_MEM_REG payload for this region. */
    public byte[] encodeSingle() {
        byte[] b = new byte[SINGLE_REGION_SIZE];
        write(b, 8);
        return b;
    }
}
