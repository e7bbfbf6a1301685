package io.jvhost.testkit.guest;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;

/**
 * Locates the host programs a guest needs: QEMU, a Debian kernel with its modules and a static
 * busybox. Stateless; any thread.
 */
public final class HostTools {

    public static final String QEMU = "qemu-system-x86_64";
    public static final String QEMU_PACKAGE = "qemu-system-x86";
    public static final String KERNEL_PACKAGE = "linux-image-amd64";
    public static final String BUSYBOX_PACKAGE = "busybox-static";

    private static final Path BOOT = Path.of("/boot");
    private static final Path MODULES = Path.of("/lib/modules");
    private static final int PT_INTERP = 3;

    private HostTools() {
    }

    /** Debian packages to install before a guest can boot, in install order; empty when ready. */
    public static List<String> missingPackages() {
        List<String> missing = new ArrayList<>();
        if (qemu().isEmpty()) {
            missing.add(QEMU_PACKAGE);
        }
        if (newestKernel().isEmpty()) {
            missing.add(KERNEL_PACKAGE);
        }
        if (staticBusybox().isEmpty()) {
            missing.add(BUSYBOX_PACKAGE);
        }
        return missing;
    }

    public static Optional<Path> qemu() {
        return findExecutable(QEMU, List.of(Path.of("/usr/bin", QEMU), Path.of("/usr/local/bin", QEMU)));
    }

    /**
     * The newest {@code /boot/vmlinuz-<version>} that is readable and has
     * {@code /lib/modules/<version>/modules.dep}; returns its version.
     */
    public static Optional<String> newestKernel() {
        List<String> versions = new ArrayList<>();
        try (DirectoryStream<Path> boot = Files.newDirectoryStream(BOOT, "vmlinuz-*")) {
            for (Path kernel : boot) {
                String version = kernel.getFileName().toString().substring("vmlinuz-".length());
                if (Files.isReadable(kernel) && Files.isRegularFile(moduleDir(version).resolve("modules.dep"))) {
                    versions.add(version);
                }
            }
        } catch (IOException e) {
            return Optional.empty();
        }
        return versions.stream().max(HostTools::compareVersions);
    }

    public static Path kernelImage(String version) {
        return BOOT.resolve("vmlinuz-" + version);
    }

    public static Path moduleDir(String version) {
        return MODULES.resolve(version);
    }

    /** A statically linked busybox: the guest has no libc, so a dynamic one cannot run there. */
    public static Optional<Path> staticBusybox() {
        Set<Path> candidates = new LinkedHashSet<>(List.of(Path.of("/bin/busybox"), Path.of("/usr/bin/busybox")));
        pathEntries("busybox").forEach(candidates::add);
        for (Path candidate : candidates) {
            if (Files.isRegularFile(candidate) && Files.isReadable(candidate) && isStaticElf(candidate)) {
                return Optional.of(candidate);
            }
        }
        return Optional.empty();
    }

    /** Compares version strings by runs of digits (numerically) and other characters. */
    public static int compareVersions(String a, String b) {
        int i = 0;
        int j = 0;
        while (i < a.length() && j < b.length()) {
            boolean digitA = Character.isDigit(a.charAt(i));
            boolean digitB = Character.isDigit(b.charAt(j));
            int endA = runEnd(a, i, digitA);
            int endB = runEnd(b, j, digitB);
            int c;
            if (digitA && digitB) {
                c = new BigInteger(a.substring(i, endA)).compareTo(new BigInteger(b.substring(j, endB)));
            } else {
                c = a.substring(i, endA).compareTo(b.substring(j, endB));
            }
            if (c != 0) {
                return c;
            }
            i = endA;
            j = endB;
        }
        return Integer.compare(a.length() - i, b.length() - j);
    }

    private static int runEnd(String s, int start, boolean digits) {
        int end = start;
        while (end < s.length() && Character.isDigit(s.charAt(end)) == digits) {
            end++;
        }
        return end;
    }

    // A 64-bit little-endian ELF executable without a PT_INTERP program header needs no loader.
    public static boolean isStaticElf(Path file) {
        try (FileChannel ch = FileChannel.open(file)) {
            ByteBuffer header = ByteBuffer.allocate(64).order(ByteOrder.LITTLE_ENDIAN);
            if (ch.read(header, 0) < 64) {
                return false;
            }
            if (header.getInt(0) != 0x464C457F || header.get(4) != 2 || header.get(5) != 1) {
                return false; // not ELF, not 64-bit or not little-endian
            }
            long phOffset = header.getLong(32);
            int phEntrySize = Short.toUnsignedInt(header.getShort(54));
            int phCount = Short.toUnsignedInt(header.getShort(56));
            if (phEntrySize < 4 || phCount == 0) {
                return false;
            }
            ByteBuffer ph = ByteBuffer.allocate(phEntrySize * phCount).order(ByteOrder.LITTLE_ENDIAN);
            if (ch.read(ph, phOffset) < ph.capacity()) {
                return false;
            }
            for (int i = 0; i < phCount; i++) {
                if (ph.getInt(i * phEntrySize) == PT_INTERP) {
                    return false;
                }
            }
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    static Optional<Path> findExecutable(String name, List<Path> preferred) {
        Set<Path> candidates = new LinkedHashSet<>(preferred);
        pathEntries(name).forEach(candidates::add);
        return candidates.stream().filter(Files::isExecutable).findFirst();
    }

    private static List<Path> pathEntries(String name) {
        String path = System.getenv("PATH");
        List<Path> entries = new ArrayList<>();
        if (path != null) {
            for (String dir : path.split(":")) {
                if (!dir.isEmpty()) {
                    entries.add(Path.of(dir, name));
                }
            }
        }
        return entries;
    }
}
