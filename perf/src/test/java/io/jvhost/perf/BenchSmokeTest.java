package io.jvhost.perf;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The {@code --quick} benchmark drivers run end to end and move traffic on both sides, jvhost's
 * and the reference's. Never asserts a speed: this machine is shared and noisy.
 */
class BenchSmokeTest {
    private static final Path OUT = Path.of("target", "bench-smoke");

    /** Fails on CI (.ci/run installs everything), skips loudly elsewhere. */
    private static void require(String what, List<String> missing) {
        if (missing.isEmpty()) {
            return;
        }
        String ci = System.getenv("CI");
        if (ci != null && !ci.equalsIgnoreCase("false")) {
            fail(what + " cannot run on CI: missing " + missing + " (.ci/run sets these up)");
        }
        System.err.println("\n" + "#".repeat(78) + "\n#  SKIPPED: " + what + "; missing: " + missing + "\n" + "#".repeat(78));
        Assumptions.abort(what + " skipped, missing: " + missing);
    }

    private static int col(Report r, String name) {
        int c = r.column(name);
        assertTrue(c >= 0, "column " + name);
        return c;
    }

    @Test
    @Tag("dpdk")
    @Timeout(value = 4, unit = TimeUnit.MINUTES)
    void shouldMovePacketsThroughJvhostAndDpdkInTheQuickNetBenchmark() throws Exception {
        require("net benchmark smoke test (DPDK testpmd)", NetBench.missing());
        NetBench.Options o = NetBench.Options.quick();
        o.out = OUT;
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        Report r = NetBench.run(o, new PrintStream(printed, true, StandardCharsets.UTF_8));
        System.out.print(printed.toString(StandardCharsets.UTF_8));
        assertEquals(o.directions.size() * o.backends.size(), r.rows().size(), "one row per direction and backend");
        for (List<Object> row : r.rows()) {
            assertEquals(0L, row.get(col(r, "errors")), "runs failed: " + row);
            assertTrue((Long) row.get(col(r, "fe_pkts")) > 0, "the frontend (testpmd) moved packets: " + row);
            assertTrue((Long) row.get(col(r, "be_pkts")) > 0, "the backend moved packets: " + row);
            assertFalse(Double.isNaN((Double) row.get(col(r, "Mpps"))), "a rate was measured: " + row);
            boolean dpdkTxonly = row.get(col(r, "backend")).equals("dpdk") && row.get(col(r, "dir")).equals("h2g");
            double busy = (Double) row.get(col(r, "busy_ns/pkt"));
            assertTrue(dpdkTxonly ? Double.isNaN(busy) : busy > 0, "the backend's busy time per packet: " + row);
            double frontendBusy = (Double) row.get(col(r, "fe_busy%"));
            assertTrue(row.get(col(r, "dir")).equals("g2h") ? Double.isNaN(frontendBusy) : frontendBusy > 0 && frontendBusy < 150,
                    "the frontend's busy share: " + row);
        }
    }

    @Test
    @Tag("qemu")
    @Timeout(value = 3, unit = TimeUnit.MINUTES)
    void shouldCompleteRequestsOnJvhostAndQemuStorageDaemonInTheQuickBlkBenchmark() throws Exception {
        require("blk benchmark smoke test (qemu-storage-daemon)", BlkBench.missing());
        BlkBench.Options o = BlkBench.Options.quick();
        o.out = OUT;
        o.imageDir = Path.of(System.getProperty("java.io.tmpdir"));
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        Report r = BlkBench.run(o, new PrintStream(printed, true, StandardCharsets.UTF_8));
        System.out.print(printed.toString(StandardCharsets.UTF_8));
        assertEquals(o.targets.size(), r.rows().size(), "one row per target");
        for (List<Object> row : r.rows()) {
            assertEquals(0L, row.get(col(r, "errors")), "failed requests or runs: " + row);
            assertTrue((Long) row.get(col(r, "requests")) > 0, "requests completed: " + row);
        }
    }

    /** The quick blk benchmark on {@code targets} only: one 1-second run each after a 1-second warm-up. */
    private static void quickBlk(String what, List<String> targets) throws Exception {
        List<String> missing = new java.util.ArrayList<>(BlkBench.missing());
        missing.addAll(BlkBench.missing(targets));
        require(what, missing);
        BlkBench.Options o = BlkBench.Options.quick();
        o.out = OUT;
        o.imageDir = Path.of(System.getProperty("java.io.tmpdir"));
        o.targets = targets;
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        Report r = BlkBench.run(o, new PrintStream(printed, true, StandardCharsets.UTF_8));
        System.out.print(printed.toString(StandardCharsets.UTF_8));
        assertEquals(targets.size(), r.rows().size(), "one row per target");
        for (List<Object> row : r.rows()) {
            assertEquals(0L, row.get(col(r, "errors")), "failed requests or runs: " + row);
            assertTrue((Long) row.get(col(r, "requests")) > 0, "requests completed: " + row);
        }
    }

    @Test
    @Tag("ceph")
    @Tag("qemu")
    @Timeout(value = 3, unit = TimeUnit.MINUTES)
    void shouldCompleteRequestsOnJvhostAndQemuStorageDaemonOnOneRbdImageInTheQuickBlkBenchmark() throws Exception {
        quickBlk("blk benchmark smoke test on RBD (a dev Ceph cluster, qemu-storage-daemon's rbd driver)",
                List.of("jvhost-rbd", "qsd-rbd"));
    }

    @Test
    @Tag("qemu")
    @Timeout(value = 3, unit = TimeUnit.MINUTES)
    void shouldCompleteRequestsOnJvhostAndQemuStorageDaemonOnOneNbdExportInTheQuickBlkBenchmark() throws Exception {
        quickBlk("blk benchmark smoke test on NBD (qemu-nbd, qemu-storage-daemon's nbd driver)", List.of("jvhost-nbd", "qsd-nbd"));
    }

    @Test
    @Tag("qemu")
    @Timeout(value = 4, unit = TimeUnit.MINUTES)
    void shouldCarryGuestTcpThroughJvhostAndQemusTapInTheQuickTcpBenchmark() throws Exception {
        require("tcp benchmark smoke test (QEMU guest, iperf3)", TcpBench.missing());
        TcpBench.Options o = TcpBench.Options.quick();
        o.out = OUT;
        o.seconds = 1;
        o.sides = java.util.List.of("jvhost", "qemu-tap");
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        Report r = TcpBench.run(o, new PrintStream(printed, true, StandardCharsets.UTF_8));
        System.out.print(printed.toString(StandardCharsets.UTF_8));
        assertEquals(2 * o.sides.size(), r.rows().size(), "one row per direction and side");
        for (List<Object> row : r.rows()) {
            assertEquals(0L, row.get(col(r, "errors")), "runs failed: " + row);
            assertTrue((Double) row.get(col(r, "Mbit/s")) > 0, "TCP moved: " + row);
        }
    }

    @Test
    @Timeout(value = 3, unit = TimeUnit.MINUTES)
    void shouldMoveFramesThroughJvhostsAndLinuxsVxlanInTheQuickVxlanBenchmark() throws Exception {
        require("vxlan benchmark smoke test (network namespaces)",
                "root".equals(System.getProperty("user.name")) ? List.of() : List.of("root, for network namespaces"));
        VxlanBench.Options o = VxlanBench.Options.quick();
        o.out = OUT;
        ByteArrayOutputStream printed = new ByteArrayOutputStream();
        Report r = VxlanBench.run(o, new PrintStream(printed, true, StandardCharsets.UTF_8));
        System.out.print(printed.toString(StandardCharsets.UTF_8));
        assertEquals(o.directions.size() * o.sizes.size() * 2, r.rows().size(), "one row per direction, size and side");
        for (List<Object> row : r.rows()) {
            assertEquals(0L, row.get(col(r, "errors")), "runs failed: " + row);
            assertTrue((Double) row.get(col(r, "Mfps/core")) > 0, "frames moved: " + row);
        }
    }
}
