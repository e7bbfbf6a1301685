package io.jvhost.testkit;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;


/**
 * A real single-node Ceph cluster for a test class, run by the repository's
 * {@code scripts/dev-ceph.sh} (one monitor, one memstore OSD, no authentication, pool {@code rbd})
 * in a directory of its own, plus the {@code rbd} command line against it. Start it in
 * {@code @BeforeAll} ({@link #start}, about 7 s) and {@link #close} it in {@code @AfterAll}.
 *
 * <p>Tests that use it are tagged {@code ceph}. Without the Debian packages ({@link #PACKAGES}) a
 * test fails on CI ({@code CI} set: {@code .ci/run} installs them) and is skipped loudly elsewhere,
 * as {@link QemuTests} does for QEMU.
 */
public final class DevCeph implements AutoCloseable {
    /** What {@code .ci/run} and {@code ./jvhost test} install. */
    public static final List<String> PACKAGES = List.of("ceph-mon", "ceph-osd", "ceph-common", "librbd-dev");
    public static final String POOL = "rbd";
    private static final long COMMAND_TIMEOUT_SECONDS = 120;

    private final Path script;
    private final Path dir;
    private final Path conf;

    private DevCeph(Path script, Path dir, Path conf) {
        this.script = script;
        this.dir = dir;
        this.conf = conf;
    }

    /** Debian packages missing for a cluster and librbd; empty when all are there. */
    public static List<String> missingPackages() {
        List<String> missing = new ArrayList<>();
        if (!Files.isExecutable(Path.of("/usr/bin/ceph-mon"))) {
            missing.add("ceph-mon");
        }
        if (!Files.isExecutable(Path.of("/usr/bin/ceph-osd"))) {
            missing.add("ceph-osd");
        }
        if (!Files.isExecutable(Path.of("/usr/bin/rbd")) || !Files.isExecutable(Path.of("/usr/bin/ceph"))) {
            missing.add("ceph-common");
        }
        if (!Files.exists(Path.of("/usr/include/rbd/librbd.h")) || librbd() == null) {
            missing.add("librbd-dev");
        }
        return missing;
    }

    private static Path librbd() {
        for (String d : List.of("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/lib/x86_64-linux-gnu")) {
            Path p = Path.of(d, "librbd.so.1");
            if (Files.exists(p)) {
                return p;
            }
        }
        return null;
    }

    /** Call first (in {@code @BeforeAll}); returns only if a cluster can run here. */
    public static void requireCeph() {
        List<String> missing = missingPackages();
        if (missing.isEmpty()) {
            return;
        }
        String caller = StackWalker.getInstance(StackWalker.Option.RETAIN_CLASS_REFERENCE)
                .getCallerClass().getSimpleName();
        HostPackages.missing("Ceph RBD tests in " + caller, missing,
                "apt-get install -y --no-install-recommends " + String.join(" ", PACKAGES));
    }

    /**
     * Starts a new cluster in a new directory under /tmp (admin socket paths must stay short);
     * fails the test if it does not come up.
     */
    public static DevCeph start(Class<?> testClass) throws IOException, InterruptedException {
        requireCeph();
        Path script = findScript();
        Path dir = Files.createTempDirectory("jvhost-ceph-");
        long t0 = System.nanoTime();
        Result r = run(List.of(script.toString(), "start", dir.toString()), dir.resolve("dev-ceph.log"));
        if (r.exit != 0) {
            run(List.of(script.toString(), "stop", dir.toString()), dir.resolve("dev-ceph.log"));
            fail("scripts/dev-ceph.sh start failed (" + r.exit + "):\n" + r.output);
        }
        Path conf = dir.resolve("ceph.conf");
        System.out.printf("dev-ceph: cluster for %s up in %d ms (%s)%n", testClass.getSimpleName(),
                TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0), conf);
        return new DevCeph(script, dir, conf);
    }

    private static Path findScript() {
        String home = System.getProperty("jvhost.home");
        Path at = (home != null ? Path.of(home) : Path.of("")).toAbsolutePath();
        for (Path p = at; p != null; p = p.getParent()) {
            Path s = p.resolve("scripts").resolve("dev-ceph.sh");
            if (Files.isRegularFile(s)) {
                return s;
            }
        }
        throw new IllegalStateException("scripts/dev-ceph.sh not found above " + at);
    }

    public Path conf() {
        return conf;
    }

    public Path dir() {
        return dir;
    }

    /** Runs {@code rbd -c CONF args...}; fails the test unless it exits 0; returns its output. */
    public String rbd(String... args) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of("rbd", "-c", conf.toString()));
        cmd.addAll(List.of(args));
        Result r = run(cmd, null);
        if (r.exit != 0) {
            fail(String.join(" ", cmd) + " exited " + r.exit + ":\n" + r.output);
        }
        return r.output;
    }

    /** Creates {@code pool/name} of {@code bytes} with rbd's default features; returns "rbd/name". */
    public String createImage(String name, long bytes) throws IOException, InterruptedException {
        rbd("create", "--size", bytes / 1024 + "K", POOL + "/" + name);
        return POOL + "/" + name;
    }

    /** The image's contents as {@code rbd export} writes them. */
    public byte[] export(String image) throws IOException, InterruptedException {
        Path out = dir.resolve("export-" + image.replace('/', '_') + "-" + System.nanoTime());
        try {
            rbd("export", "--no-progress", image, out.toString());
            return Files.readAllBytes(out);
        } finally {
            Files.deleteIfExists(out);
        }
    }

    /** {@code scripts/dev-ceph.sh stop DIR} (OSD, then monitor), then deletes the directory. */
    @Override
    public void close() throws IOException, InterruptedException {
        Result r = run(List.of(script.toString(), "stop", dir.toString()), dir.resolve("dev-ceph.log"));
        if (r.exit != 0) {
            System.err.println("dev-ceph stop exited " + r.exit + ":\n" + r.output + "\nleaving " + dir);
            return;
        }
        try (var paths = Files.walk(dir)) {
            for (Path p : paths.sorted(java.util.Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        }
    }

    private record Result(int exit, String output) {}

    private static Result run(List<String> cmd, Path log) throws IOException, InterruptedException {
        Path out = Files.createTempFile("dev-ceph", ".out");
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(out.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
            if (!p.waitFor(COMMAND_TIMEOUT_SECONDS, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor();
                return new Result(-1, "timed out after " + COMMAND_TIMEOUT_SECONDS + " s: " + String.join(" ", cmd)
                        + "\n" + Files.readString(out, StandardCharsets.UTF_8));
            }
            String text = Files.readString(out, StandardCharsets.UTF_8);
            if (log != null) {
                Files.writeString(log, "$ " + String.join(" ", cmd) + "\n" + text, StandardCharsets.UTF_8,
                        java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
            }
            return new Result(p.exitValue(), text);
        } finally {
            Files.deleteIfExists(out);
        }
    }
}
