package io.jvhost.testkit;

import io.jvhost.testkit.frontend.GuestRam;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Builds vhost-user request payloads field by field, including ones no sane frontend would send,
 * for use with {@code Frontend.send}, {@code request} and {@code requestWithAck}.
 */
public final class Payloads {
    public static final byte[] NONE = new byte[0];
    /** The NOFD bit of SET_VRING_KICK/CALL/ERR. */
    public static final int NOFD = 0x100;

    private Payloads() {
    }

    /** A memory region as the frontend describes it: guest address, size, its own address, file offset. */
    public record Region(long gpa, long size, long hva, long mmapOffset) {
        /** Region {@code i} of {@code ram}, described the way {@code Frontend.setMemTable} does. */
        public static Region of(GuestRam ram, int i) {
            long gpa = ram.regionGpa(i);
            return new Region(gpa, ram.regionSize(i), GuestRam.hva(gpa), gpa);
        }
    }

    private static ByteBuffer le(int size) {
        return ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    public static byte[] u64(long v) {
        return le(8).putLong(v).array();
    }

    /** {@code struct vhost_vring_state}: index and num. */
    public static byte[] vringState(int index, int num) {
        return le(8).putInt(index).putInt(num).array();
    }

    /** {@code struct vhost_vring_addr}. */
    public static byte[] vringAddr(int index, int flags, long desc, long used, long avail, long log) {
        return le(40).putInt(index).putInt(flags).putLong(desc).putLong(used).putLong(avail).putLong(log).array();
    }

    /** SET_MEM_TABLE with {@code regions}, the count field saying how many there are. */
    public static byte[] memTable(Region... regions) {
        return memTable(regions.length, regions);
    }

    /** SET_MEM_TABLE whose count field says {@code count}, whatever follows. */
    public static byte[] memTable(int count, Region... regions) {
        ByteBuffer b = le(8 + 32 * regions.length).putInt(count).putInt(0);
        for (Region r : regions) {
            b.putLong(r.gpa()).putLong(r.size()).putLong(r.hva()).putLong(r.mmapOffset());
        }
        return b.array();
    }

    /** ADD_MEM_REG / REM_MEM_REG: 8 bytes of padding, then one region. */
    public static byte[] memReg(Region r) {
        return le(40).putLong(0).putLong(r.gpa()).putLong(r.size()).putLong(r.hva()).putLong(r.mmapOffset()).array();
    }

    /** GET_CONFIG / SET_CONFIG: offset, size, flags, then {@code data} (zeros of {@code size} for a read). */
    public static byte[] config(int offset, int size, int flags, byte[] data) {
        return le(12 + data.length).putInt(offset).putInt(size).putInt(flags).put(data).array();
    }

    /** A well-formed GET_CONFIG request for {@code size} bytes at {@code offset}. */
    public static byte[] configRead(int offset, int size) {
        return config(offset, size, 0, new byte[size]);
    }

    /** SET_LOG_BASE: {@code struct vhost_user_log}, mmap size and offset. */
    public static byte[] logBase(long size, long offset) {
        return le(16).putLong(size).putLong(offset).array();
    }
}
