package io.jvhost.testkit.guest;

import java.io.BufferedOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.zip.GZIPOutputStream;

import org.apache.commons.compress.archivers.cpio.CpioArchiveEntry;
import org.apache.commons.compress.archivers.cpio.CpioArchiveOutputStream;
import org.apache.commons.compress.archivers.cpio.CpioConstants;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A throwaway guest: the host's newest Debian kernel plus an initramfs holding a static busybox,
 * the virtio PCI modules and the {@code /init} that {@link QemuGuest} talks to.
 *
 * <p>The initramfs is cached under a content key (format, kernel, modules, init script, busybox),
 * so it is rebuilt only when one of them changes. It is written to a temporary file and renamed
 * into place, so JVMs preparing the same image in parallel each see a complete file.
 *
 * <p>Instances are immutable; every method may be called from any thread.
 */
public final class GuestImage {

    private static final Logger LOG = LoggerFactory.getLogger(GuestImage.class);

    /** Modules the guest loads at boot; their dependencies are added from {@code modules.dep}. */
    /** Host programs copied into the guest, with their libraries, when the host has them. */
    public static final List<String> EXTRA_PROGRAMS = List.of("iperf3");
    public static final List<String> MODULES = List.of("virtio_ring", "virtio", "virtio_pci_modern_dev",
            "virtio_pci_legacy_dev", "virtio_pci", "rng_core", "virtio-rng", "virtio_blk", "failover",
            "net_failover", "virtio_net", "crc32c_generic", "ext4");

    /** Bump when the archive layout changes so old caches are not reused. */
    private static final String FORMAT = "jvhost-guest-2";
    private static final String INIT_RESOURCE = "init";
    private static final String MODULE_LIST = "etc/jvhost/modules";
    private static final byte[] NO_DATA = new byte[0];

    private final String kernelVersion;
    private final Path kernel;
    private final Path initramfs;
    private final List<String> guestModules;

    private GuestImage(String kernelVersion, Path kernel, Path initramfs, List<String> guestModules) {
        this.kernelVersion = kernelVersion;
        this.kernel = kernel;
        this.initramfs = initramfs;
        this.guestModules = guestModules;
    }

    /** {@code ${java.io.tmpdir}/jvhost-guest}. */
    public static Path defaultCacheDir() {
        return Path.of(System.getProperty("java.io.tmpdir"), "jvhost-guest");
    }

    /**
     * Debian packages that must be installed before a guest can boot, e.g.
     * {@code [qemu-system-x86, busybox-static]}; empty when everything is there.
     */
    public static List<String> missingHostPackages() {
        return HostTools.missingPackages();
    }

    /** Same as {@link #prepare(Path)} with {@link #defaultCacheDir()}. */
    public static GuestImage prepare() throws IOException {
        return prepare(defaultCacheDir());
    }

    /**
     * Finds the newest kernel and returns an image whose initramfs is up to date in
     * {@code cacheDir}, building it if needed.
     *
     * @throws IllegalStateException if a host package is missing (see {@link #missingHostPackages()})
     */
    public static GuestImage prepare(Path cacheDir) throws IOException {
        List<String> missing = missingHostPackages();
        String version = HostTools.newestKernel().orElse(null);
        Path busybox = HostTools.staticBusybox().orElse(null);
        if (version == null || busybox == null) {
            throw new IllegalStateException(
                    "cannot build a guest image; install: apt-get install " + String.join(" ", missing));
        }
        Path kernel = HostTools.kernelImage(version);
        Path moduleDir = HostTools.moduleDir(version);
        List<Path> modules = KernelModules.load(moduleDir).loadOrder(MODULES);
        byte[] init = initScript();

        List<String> guestModules = new ArrayList<>(modules.size());
        for (Path module : modules) {
            guestModules.add(module.toString());
        }
        Map<String, Path> extras = extraPrograms();
        Path initramfs = cacheDir.resolve("initramfs-" + version + "-"
                + contentKey(version, kernel, busybox, concat(modules, List.copyOf(extras.values())), init) + ".cpio.gz");
        if (Files.isRegularFile(initramfs)) {
            LOG.debug("reusing guest initramfs {}", initramfs);
        } else {
            long start = System.nanoTime();
            build(initramfs, busybox, modules, guestModules, init, extras);
            LOG.info("built guest initramfs {} ({} KiB) in {} ms", initramfs, Files.size(initramfs) / 1024,
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
        }
        return new GuestImage(version, kernel, initramfs, List.copyOf(guestModules));
    }

    /** The kernel release, as {@code uname -r} prints it in the guest. */
    public String kernelVersion() {
        return kernelVersion;
    }

    /** {@code /boot/vmlinuz-<version>}, passed to QEMU {@code -kernel}. */
    public Path kernel() {
        return kernel;
    }

    /** The cached gzipped cpio archive, passed to QEMU {@code -initrd}. */
    public Path initramfs() {
        return initramfs;
    }

    /** Module files the guest loads at boot, in load order, as paths inside the guest. */
    public List<String> modules() {
        return guestModules;
    }

    @Override
    public String toString() {
        return "GuestImage[" + kernel + ", " + initramfs + "]";
    }

    private static byte[] initScript() throws IOException {
        try (InputStream in = GuestImage.class.getResourceAsStream(INIT_RESOURCE)) {
            if (in == null) {
                throw new IOException("resource io/jvhost/testkit/guest/init is missing from the class path");
            }
            return in.readAllBytes();
        }
    }

    // Size and mtime stand in for file contents: hashing the kernel and busybox on every test
    // run would cost more than the rebuild it saves.
    private static String contentKey(String version, Path kernel, Path busybox, List<Path> modules, byte[] init)
            throws IOException {
        MessageDigest sha;
        try {
            sha = MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        StringBuilder key = new StringBuilder(FORMAT).append('\n').append(version).append('\n');
        for (Path file : concat(List.of(kernel, busybox), modules)) {
            key.append(file).append(' ').append(Files.size(file)).append(' ')
                    .append(Files.getLastModifiedTime(file).toMillis()).append('\n');
        }
        sha.update(key.toString().getBytes(StandardCharsets.UTF_8));
        sha.update(init);
        return HexFormat.of().formatHex(sha.digest(), 0, 8);
    }

    private static List<Path> concat(List<Path> a, List<Path> b) {
        List<Path> all = new ArrayList<>(a);
        all.addAll(b);
        return all;
    }

    /**
     * Host programs that go into the guest when installed, with the shared libraries {@code ldd}
     * names, each at its host path: iperf3, for TCP throughput through the NIC (issue: offloads).
     * Guest path (relative) to host file.
     */
    private static Map<String, Path> extraPrograms() throws IOException {
        Map<String, Path> files = new TreeMap<>();
        for (String program : EXTRA_PROGRAMS) {
            Optional<Path> host = HostTools.findExecutable(program, List.of(Path.of("/usr/bin", program)));
            if (host.isEmpty()) {
                continue;
            }
            files.put("bin/" + program, host.get());
            Process ldd = new ProcessBuilder("ldd", host.get().toString()).redirectErrorStream(true).start();
            String out = new String(ldd.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            try {
                ldd.waitFor(30, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted running ldd " + host.get(), e);
            }
            for (String line : out.split("\n")) {
                // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
                String t = line.strip();
                int arrow = t.indexOf("=> ");
                String path = (arrow >= 0 ? t.substring(arrow + 3) : t).split(" ")[0];
                if (path.startsWith("/")) {
                    files.put(path.substring(1), Path.of(path));
                }
            }
        }
        return files;
    }

    private static void build(Path target, Path busybox, List<Path> modules, List<String> guestModules, byte[] init,
                              Map<String, Path> extras) throws IOException {
        Files.createDirectories(target.getParent());
        List<String> applets = busyboxApplets(busybox);
        Path tmp = Files.createTempFile(target.getParent(), ".initramfs-", ".tmp");
        try {
            try (OutputStream file = Files.newOutputStream(tmp);
                    CpioArchiveOutputStream cpio = new CpioArchiveOutputStream(
                            new GZIPOutputStream(new BufferedOutputStream(file, 1 << 16), 1 << 16), CpioConstants.FORMAT_NEW)) {
                writeTree(cpio, busybox, applets, modules, guestModules, init, extras);
            }
            // Temp files start private; other users sharing the cache dir must be able to boot it.
            Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rw-r--r--"));
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
            }
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    /**
     * The archive in the SVR4 "newc" format, the only one the kernel unpacks as an initramfs.
     * Every entry has mtime 0 and uid/gid 0, so identical inputs give identical bytes; the stream
     * numbers the inodes (the kernel takes entries with the same inode for hard links).
     */
    private static void writeTree(CpioArchiveOutputStream cpio, Path busybox, List<String> applets, List<Path> modules,
            List<String> guestModules, byte[] init, Map<String, Path> extras) throws IOException {
        List<String> files = new ArrayList<>(applets);
        files.addAll(extras.keySet());
        files.add("bin/busybox");
        files.add(MODULE_LIST);
        files.add("etc/passwd");
        files.add("etc/group");
        for (String module : guestModules) {
            files.add(module.substring(1));
        }
        // Parents sort before children, and the kernel needs each directory before its entries.
        TreeSet<String> dirs = new TreeSet<>(List.of("dev", "proc", "sys", "tmp", "run", "root", "mnt"));
        for (String file : files) {
            for (int slash = file.indexOf('/'); slash > 0; slash = file.indexOf('/', slash + 1)) {
                dirs.add(file.substring(0, slash));
            }
        }
        for (String dir : dirs) {
            write(cpio, entry(dir, CpioConstants.C_ISDIR | 0755, 2), NO_DATA);
        }
        // The kernel opens /dev/console for init's stdio before init can mount devtmpfs.
        CpioArchiveEntry console = entry("dev/console", CpioConstants.C_ISCHR | 0600, 1);
        console.setRemoteDeviceMaj(5);
        console.setRemoteDeviceMin(1);
        write(cpio, console, NO_DATA);
        write(cpio, entry("init", CpioConstants.C_ISREG | 0755, 1), init);
        write(cpio, entry("bin/busybox", CpioConstants.C_ISREG | 0755, 1), Files.readAllBytes(busybox));
        byte[] busyboxPath = "/bin/busybox".getBytes(StandardCharsets.UTF_8);
        for (String applet : applets) {
            write(cpio, entry(applet, CpioConstants.C_ISLNK | 0777, 1), busyboxPath); // a symlink's data is its target
        }
        write(cpio, entry("etc/passwd", CpioConstants.C_ISREG | 0644, 1),
                "root:x:0:0:root:/root:/bin/sh\n".getBytes(StandardCharsets.US_ASCII));
        write(cpio, entry("etc/group", CpioConstants.C_ISREG | 0644, 1), "root:x:0:\n".getBytes(StandardCharsets.US_ASCII));
        write(cpio, entry(MODULE_LIST, CpioConstants.C_ISREG | 0644, 1),
                (String.join("\n", guestModules) + "\n").getBytes(StandardCharsets.UTF_8));
        for (int i = 0; i < modules.size(); i++) {
            write(cpio, entry(guestModules.get(i).substring(1), CpioConstants.C_ISREG | 0644, 1),
                    Files.readAllBytes(modules.get(i)));
        }
        for (Map.Entry<String, Path> extra : extras.entrySet()) {
            write(cpio, entry(extra.getKey(), CpioConstants.C_ISREG | 0755, 1), Files.readAllBytes(extra.getValue()));
        }
    }

    /** An entry for {@code path}, relative as the kernel wants it, owned by root, with mtime 0. */
    private static CpioArchiveEntry entry(String path, int mode, int links) {
        if (path.isEmpty() || path.startsWith("/")) {
            throw new IllegalArgumentException("cpio paths are relative and non-empty: " + path);
        }
        CpioArchiveEntry e = new CpioArchiveEntry(CpioConstants.FORMAT_NEW, path);
        e.setMode(mode);
        e.setNumberOfLinks(links);
        e.setTime(0);
        return e;
    }

    private static void write(CpioArchiveOutputStream cpio, CpioArchiveEntry e, byte[] content) throws IOException {
        e.setSize(content.length);
        cpio.putArchiveEntry(e);
        cpio.write(content);
        cpio.closeArchiveEntry();
    }

    /** Paths such as {@code bin/sh} and {@code sbin/insmod}, as this busybox build installs them. */
    private static List<String> busyboxApplets(Path busybox) throws IOException {
        // Output goes to a file so a wedged busybox cannot block us on a full pipe.
        Path list = Files.createTempFile("jvhost-busybox-", ".txt");
        try {
            Process p = new ProcessBuilder(busybox.toString(), "--list-full")
                    .redirectErrorStream(true)
                    .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")))
                    .redirectOutput(list.toFile())
                    .start();
            try {
                if (!p.waitFor(10, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    throw new IOException(busybox + " --list-full did not finish in 10 s");
                }
            } catch (InterruptedException e) {
                p.destroyForcibly();
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while listing busybox applets");
            }
            String out = Files.readString(list);
            if (p.exitValue() != 0) {
                throw new IOException(busybox + " --list-full failed: " + out);
            }
            Set<String> applets = new LinkedHashSet<>();
            for (String line : out.split("\n")) {
                String applet = line.strip();
                // Skip anything odd rather than let a path escape the archive root.
                if (!applet.isEmpty() && !applet.startsWith("/") && !applet.contains("..")
                        && !applet.equals("bin/busybox") && !applet.equals("init")) {
                    applets.add(applet);
                }
            }
            return List.copyOf(applets);
        } finally {
            Files.deleteIfExists(list);
        }
    }
}
