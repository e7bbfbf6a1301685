package io.jvhost.core.protocol;

/**
 * {@code VhostUserLog} of SET_LOG_BASE: size and offset of the dirty bitmap in the one fd that
 * comes with it. Decoding refuses an empty log, a range that overflows and an offset that is not
 * 8-byte aligned (the bitmap is set in atomic 64-bit words, which must be aligned; QEMU sends 0);
 * whether the file holds it is for whoever maps it.
 */
public record LogBase(long size, long offset) {
    public static final int SIZE = 16;

    public static LogBase decode(byte[] payload, int fdCount) throws ProtocolException {
        Payload.expect(payload, fdCount, SIZE, 1);
        long size = Payload.u64(payload, 0), offset = Payload.u64(payload, 8);
        if (size <= 0 || offset < 0 || offset + size < 0) {
            throw new ProtocolException("log of " + size + " bytes at " + offset);
        }
        if ((offset & 7) != 0) {
            throw new ProtocolException("log at offset " + offset + ": not a multiple of 8");
        }
        return new LogBase(size, offset);
    }

    public byte[] encode() {
        byte[] b = new byte[SIZE];
        Payload.putU64(b, 0, size);
        Payload.putU64(b, 8, offset);
        return b;
    }
}
