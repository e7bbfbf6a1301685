package io.jvhost.perf;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * SPDK's vhost target ({@code build/bin/vhost}) as {@code bench blk}'s {@code spdk-null} runs it:
 * a null bdev (reads leave the buffer as it was, writes go nowhere: SPDK's like of
 * {@code jvhost blk --null}) behind one vhost-user-blk controller, the whole app on hugepages with
 * one reactor pinned to the backend CPU, which is how SPDK users run it. SPDK is not packaged for
 * Debian; {@code scripts/build-spdk.sh} builds it from its source.
 */
public final class SpdkVhost {
    /** Hugepage memory for SPDK's own buffers (its {@code -s}); the null bdev holds no data. */
    static final int HUGEPAGE_MB = 256;
    /** The bdev's block size; the disk is {@code diskBytes / BLOCK} blocks. */
    static final int BLOCK = 512;

    private SpdkVhost() {
    }

    /** The {@code vhost} binary that {@code given} names: the binary itself, or an SPDK tree with {@code build/bin/vhost}. */
    static Path binary(Path given) {
        return given != null && Files.isDirectory(given) ? given.resolve("build/bin/vhost") : given;
    }

    /** Nothing, or what {@code spdk-null} lacks: SPDK's vhost target, hugepages, taskset. */
    public static List<String> missing(Path given) {
        List<String> missing = new ArrayList<>();
        Path vhost = binary(given);
        if (vhost == null) {
            missing.add("SPDK's vhost target for spdk-null (--spdk PATH: SPDK's build/bin/vhost or its tree; scripts/build-spdk.sh builds one)");
        } else if (!Files.isExecutable(vhost)) {
            missing.add("SPDK's vhost target at " + vhost + " (not an executable file; scripts/build-spdk.sh builds one)");
        }
        missing.addAll(Bench.missingHugepages());
        if (!Files.isExecutable(Path.of("/usr/bin/taskset"))) {
            missing.add("taskset (apt-get install util-linux)");
        }
        return missing;
    }

    /**
     * The JSON config {@code vhost --json} loads at start: a null bdev of {@code diskBytes} and a
     * vhost-user-blk controller named {@code controller} on it, polled by the reactor on {@code cpu}.
     */
    static void writeNullConfig(Path file, String controller, long diskBytes, int cpu) throws IOException {
        Map<String, Object> bdev = Map.of("subsystem", "bdev", "config", List.of(Map.of(
                "method", "bdev_null_create",
                "params", Map.of("name", "Null0", "num_blocks", diskBytes / BLOCK, "block_size", BLOCK))));
        Map<String, Object> vhost = Map.of("subsystem", "vhost_blk", "config", List.of(Map.of(
                "method", "vhost_create_blk_controller",
                "params", Map.of("ctrlr", controller, "dev_name", "Null0", "cpumask", mask(cpu)))));
        new ObjectMapper().writerWithDefaultPrettyPrinter().writeValue(file.toFile(),
                Map.of("subsystems", List.of(bdev, vhost)));
    }

    /**
     * The command line: its sockets in {@code socketDir}, one reactor on {@code cpu} ({@code -m}),
     * the app's other threads on the same CPU ({@code taskset}), {@link #HUGEPAGE_MB} of hugepages.
     */
    static List<String> command(Path given, Path socketDir, Path config, int cpu) {
        return List.of("taskset", "-c", Integer.toString(cpu), binary(given).toString(), "-S", socketDir.toString(),
                "-m", mask(cpu), "-s", Integer.toString(HUGEPAGE_MB), "--json", config.toString());
    }

    /** SPDK's core mask for the one CPU {@code cpu}. */
    static String mask(int cpu) {
        return "0x" + Long.toHexString(1L << cpu);
    }
}
