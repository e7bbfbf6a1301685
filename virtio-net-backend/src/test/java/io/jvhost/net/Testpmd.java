package io.jvhost.net;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.junit.jupiter.api.Assumptions;

import static org.junit.jupiter.api.Assertions.fail;

/**
 * Runs DPDK's {@code dpdk-testpmd} with a {@code net_virtio_user} port: a real vhost-user frontend
 * without a VM. Hugepages and {@code --single-file-segments} as virtio-user needs them.
 */
final class Testpmd {
    static final Path BINARY = Path.of("/usr/bin/dpdk-testpmd");
    private static final Pattern TOTALS = Pattern.compile(
            "Accumulated forward statistics.*?RX-packets:\\s+(\\d+).*?TX-packets:\\s+(\\d+)", Pattern.DOTALL);
    private static int runs;

    /** Packet counts testpmd printed when it stopped. */
    record Totals(long rx, long tx, String output) {}

    private Testpmd() {}

    /** Fails on CI, skips loudly elsewhere, unless testpmd and hugepages are there. */
    static void require() throws IOException {
        List<String> missing = new ArrayList<>();
        if (!Files.isExecutable(BINARY)) {
            missing.add("dpdk-testpmd (apt-get install dpdk dpdk-dev)");
        }
        String pages; // procfs reports size 0, which trips Files.readString: read a line instead
        try (var r = Files.newBufferedReader(Path.of("/proc/sys/vm/nr_hugepages"))) {
            pages = r.readLine().trim();
        }
        if (Long.parseLong(pages) < 256) {
            missing.add("hugepages (echo 1024 > /proc/sys/vm/nr_hugepages; mount -t hugetlbfs nodev /dev/hugepages)");
        }
        if (missing.isEmpty()) {
            return;
        }
        String ci = System.getenv("CI");
        if (ci != null && !ci.equalsIgnoreCase("false")) {
            fail("DPDK tests cannot run on CI: missing " + missing + " (.ci/run sets these up)");
        }
        System.err.println("\n" + "#".repeat(78) + "\n#  SKIPPED: DPDK testpmd tests; missing: " + missing + "\n" + "#".repeat(78));
        Assumptions.abort("DPDK tests skipped, missing: " + missing);
    }

    /**
     * Runs testpmd in {@code forwardMode} against the vhost-user socket for {@code seconds}, then
     * stops it (SIGTERM makes it print its totals) and returns them.
     */
    static Totals run(Path socket, int queues, boolean mergeable, String forwardMode, int seconds, String... extra)
            throws IOException, InterruptedException {
        return run(socket, queues, mergeable, "", forwardMode, seconds, extra);
    }

    /**
     * As above, with more virtio-user devargs: {@code ring} is appended to the vdev, e.g.
     * {@code packed_vq=1} or {@code packed_vq=1,in_order=1} (empty: split rings, any order).
     */
    static Totals run(Path socket, int queues, boolean mergeable, String ring, String forwardMode, int seconds,
                      String... extra) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>(List.of(BINARY.toString(), "-l", "0-1", "--no-pci", "--single-file-segments",
                "--file-prefix=jvhost-test-" + ProcessHandle.current().pid() + "-" + (runs++), "--log-level=7",
                "--vdev=net_virtio_user0,path=" + socket + ",queues=" + queues + ",mrg_rxbuf=" + (mergeable ? 1 : 0)
                        + (ring.isEmpty() ? "" : "," + ring),
                "--", "--forward-mode=" + forwardMode, "--auto-start", "--nb-cores=1", "--rxq=" + queues,
                "--txq=" + queues, "--txd=1024", "--rxd=1024", "--stats-period=1", "--disable-link-check"));
        cmd.addAll(List.of(extra));
        Path log = Files.createTempFile("testpmd", ".log");
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        boolean exited = p.waitFor(seconds, TimeUnit.SECONDS);
        if (!exited) {
            p.destroy();
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        }
        String out = Files.readString(log, StandardCharsets.UTF_8);
        Matcher m = TOTALS.matcher(out);
        if (!m.find()) {
            fail("testpmd printed no totals (" + String.join(" ", cmd) + "):\n" + out.substring(Math.max(0, out.length() - 4000)));
        }
        return new Totals(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)), out);
    }
}
