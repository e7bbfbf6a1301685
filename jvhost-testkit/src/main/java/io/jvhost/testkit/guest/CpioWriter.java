package io.jvhost.testkit.guest;

import java.io.Closeable;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * Streams a cpio archive in the SVR4 "newc" format, the only one the kernel unpacks as an
 * initramfs. Every entry gets mtime 0 and uid/gid 0 so identical inputs give identical bytes.
 *
 * <p>Not thread-safe: one thread builds one archive.
 */
public final class CpioWriter implements Closeable {

    private static final int S_IFDIR = 0040000;
    private static final int S_IFREG = 0100000;
    private static final int S_IFLNK = 0120000;
    private static final int S_IFCHR = 0020000;
    private static final String TRAILER = "TRAILER!!!";

    private final OutputStream out;
    private long written;
    // The kernel uses (ino, dev) to detect hard links, so every entry needs its own number.
    private int nextInode = 1;

    CpioWriter(OutputStream out) {
        this.out = out;
    }

    public void directory(String path) throws IOException {
        entry(path, S_IFDIR | 0755, 2, 0, 0, new byte[0]);
    }

    public void file(String path, int permissions, byte[] content) throws IOException {
        entry(path, S_IFREG | permissions, 1, 0, 0, content);
    }

    public void symlink(String path, String target) throws IOException {
        entry(path, S_IFLNK | 0777, 1, 0, 0, target.getBytes(StandardCharsets.UTF_8));
    }

    public void charDevice(String path, int permissions, int major, int minor) throws IOException {
        entry(path, S_IFCHR | permissions, 1, major, minor, new byte[0]);
    }

    /** Writes the trailer entry and closes the underlying stream. */
    @Override
    public void close() throws IOException {
        try (out) {
            // The trailer is an ordinary empty entry with inode 0 and a reserved name.
            header(TRAILER, 0, 0, 1, 0, 0, 0);
        }
    }

    private void entry(String path, int mode, int links, int rdevMajor, int rdevMinor, byte[] data)
            throws IOException {
        if (path.startsWith("/") || path.isEmpty()) {
            throw new IllegalArgumentException("cpio paths are relative and non-empty: " + path);
        }
        header(path, nextInode++, mode, links, data.length, rdevMajor, rdevMinor);
        write(data);
        pad();
    }

    private void header(String name, int inode, int mode, int links, int size, int rdevMajor,
            int rdevMinor) throws IOException {
        byte[] nameBytes = name.getBytes(StandardCharsets.UTF_8);
        StringBuilder h = new StringBuilder(110).append("070701");
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
        // namesize (with its NUL), check
        for (int field : new int[] {inode, mode, 0, 0, links, 0, size, 0, 0, rdevMajor, rdevMinor,
                nameBytes.length + 1, 0}) {
            h.append(String.format("%08X", field));
        }
        write(h.toString().getBytes(StandardCharsets.US_ASCII));
        write(nameBytes);
        write(new byte[] {0});
        pad();
    }

    // Header+name and data are each padded to a multiple of four bytes.
    private void pad() throws IOException {
        while ((written & 3) != 0) {
            write(new byte[] {0});
        }
    }

    private void write(byte[] bytes) throws IOException {
        out.write(bytes);
        written += bytes.length;
    }
}
