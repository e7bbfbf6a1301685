package io.jvhost.testkit;

import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.FileCalls;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Reads and writes a file's bytes with {@code pread}/{@code pwrite}, so that a test can look into
 * a memfd it shares with the backend (a dirty log, an inflight region) without mapping it: a
 * {@link OpenFds.Probe} then counts only the backend's mappings. Any thread.
 */
public final class FileBytes {
    private FileBytes() {
    }

    /** {@code length} bytes at {@code offset} of {@code fd}; fails unless all of them are there. */
    public static byte[] read(Fd fd, long offset, int length) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(Math.max(1, length));
            long n = FileCalls.pread(fd.get(), buf, 0, length, offset);
            if (n != length) {
                throw new IllegalStateException("pread of " + length + " bytes at " + offset + " returned " + n);
            }
            return buf.asSlice(0, length).toArray(ValueLayout.JAVA_BYTE);
        }
    }

    /** Writes {@code data} at {@code offset} of {@code fd}. */
    public static void write(Fd fd, long offset, byte[] data) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(Math.max(1, data.length));
            MemorySegment.copy(data, 0, buf, ValueLayout.JAVA_BYTE, 0, data.length);
            long n = FileCalls.pwrite(fd.get(), buf, 0, data.length, offset);
            if (n != data.length) {
                throw new IllegalStateException("pwrite of " + data.length + " bytes at " + offset + " returned " + n);
            }
        }
    }
}
