package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** Shared memory mappings of peer-provided fds. Control path. */
public final class Mappings {
    private Mappings() {}

    /**
     * Maps {@code size} bytes of {@code fd} starting at {@code offset}, read-write and shared. The
     * returned segment is exactly that range; it is unmapped when {@code arena} closes.
     *
     * <p>The caller must first check that the file holds {@code offset + size} bytes: touching a
     * mapping past the end of its file raises SIGBUS, which would kill the process.
     */
    public static MemorySegment map(int fd, long offset, long size, Arena arena) throws NativeException {
        long align = LibC.check(FileCalls.blockSize(fd), "fstat");
        if (align <= 0 || Long.bitCount(align) != 1) {
            align = 4096;
        }
        long alignedOffset = offset & -align;
        long delta = offset - alignedOffset;
        long length = Math.addExact(size + delta, align - 1) & -align;
        long address = LibC.check(LibC.mmap(length, LibC.PROT_READ | LibC.PROT_WRITE, LibC.MAP_SHARED, fd,
                alignedOffset), "mmap");
        MemorySegment whole = LibC.segmentAt(address, length, arena, () -> LibC.munmap(address, length));
        return whole.asSlice(delta, size);
    }

    /** A new memfd of {@code size} bytes (for the frontend simulator and tests). */
    public static Fd memfd(String name, long size) throws NativeException {
        return memfd(name, size, false);
    }

    /**
     * A new memfd of {@code size} bytes, on 2 MiB hugepages when {@code hugepages} ({@code size} a
     * multiple of 2 MiB; a shared mapping of it reserves its pages, so it fails at {@code mmap},
     * not with SIGBUS later, when the pool is short).
     */
    public static Fd memfd(String name, long size, boolean hugepages) throws NativeException {
        int flags = LibC.MFD_CLOEXEC | (hugepages ? LibC.MFD_HUGETLB : 0);
        Fd fd = Fd.adopt((int) LibC.check(LibC.memfdCreate(name, flags), "memfd_create"));
        int r = FileCalls.ftruncate(fd.get(), size);
        if (r < 0) {
            fd.close();
            LibC.check(r, "ftruncate");
        }
        return fd;
    }
}
