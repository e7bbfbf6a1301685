package io.jvhost.cli.bench;

import io.jvhost.core.runtime.IdleMode;
import io.jvhost.perf.BlkBench;
import io.jvhost.perf.NetBench;
import io.jvhost.perf.TcpBench;

import io.jvhost.cli.Failure;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import picocli.CommandLine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code bench net} and {@code bench blk} take {@code --quick}, {@code --queues}, {@code --runs},
 * {@code --seconds} and {@code --out} from one mixin: given, they reach the benchmark's options
 * over its defaults or quick presets; left out, the benchmark's own values stay. Only parsed here:
 * no benchmark runs.
 */
class BenchCommandTest {

    private static Object parse(String... args) {
        return new CommandLine(new BenchCommand()).parseArgs(args).subcommand().commandSpec().userObject();
    }

    @Test
    void shouldPutGivenOptionsOverTheQuickPresetsWhenNetIsQuick() {
        BenchCommand.Net net = (BenchCommand.Net) parse("net", "--quick", "--runs", "2", "--seconds", "4", "--out", "x",
                "--queues", "1,2", "--dirs", "g2h");
        NetBench.Options o = net.options();
        NetBench.Options quick = NetBench.Options.quick();
        assertEquals(2, o.runs);
        assertEquals(4, o.seconds);
        assertEquals(Path.of("x"), o.out);
        assertEquals(List.of(1, 2), o.queues);
        assertEquals(List.of("g2h"), o.directions);
        assertEquals(quick.sizes, o.sizes, "a quick preset not given on the command line");
        assertEquals(quick.backends, o.backends);
    }

    @Test
    void shouldKeepTheBlkBenchmarksDefaultsWhenOnlyItsOwnOptionsAreGiven() {
        BenchCommand.Blk blk = (BenchCommand.Blk) parse("blk", "--targets", "jvhost-ram", "--busy-poll");
        BlkBench.Options defaults = new BlkBench.Options();
        BlkBench.Options o = blk.options();
        assertEquals(defaults.runs, o.runs);
        assertEquals(defaults.seconds, o.seconds);
        assertEquals(defaults.queues, o.queues);
        assertEquals(defaults.workloads, o.workloads);
        assertEquals(List.of("jvhost-ram"), o.targets);
        assertEquals(IdleMode.BUSY, o.idle, "--busy-poll is --idle busy");
        assertEquals(IdleMode.ADAPTIVE, ((BenchCommand.Blk) parse("blk")).options().idle, "adaptive, the CLI's default, unless told");
        assertEquals(IdleMode.EVENT, ((BenchCommand.Blk) parse("blk", "--idle", "event")).options().idle);
        assertEquals(true, o.eventIdx, "the frontend negotiates EVENT_IDX unless told not to");
        String home = System.getProperty("jvhost.home");
        assertEquals(home == null ? Path.of("perf", "results") : Path.of(home, "perf", "results"), o.out);
    }

    @Test
    void shouldTakeTheNewTargetsAndBackendsAndRefuseUnknownOnesWithTheKnownNames() {
        BenchCommand.Blk blk = (BenchCommand.Blk) parse("blk", "--targets", "jvhost-null,qsd-null,jvhost-ram,qsd-null-zeroes");
        assertEquals(List.of("jvhost-null", "qsd-null", "jvhost-ram", "qsd-null-zeroes"), blk.options().targets);
        BenchCommand.Blk remote = (BenchCommand.Blk) parse("blk", "--targets", "jvhost-rbd,qsd-rbd,jvhost-nbd,qsd-nbd,qsd-uring",
                "--no-event-idx", "--image-dir", "/var/tmp");
        assertEquals(List.of("jvhost-rbd", "qsd-rbd", "jvhost-nbd", "qsd-nbd", "qsd-uring"), remote.options().targets);
        assertFalse(remote.options().eventIdx);
        assertEquals(Path.of("/var/tmp"), remote.options().imageDir);
        assertEquals(Path.of("/dev/shm"), blk.options().imageDir, "tmpfs unless told");
        assertFalse(new BlkBench.Options().targets.contains("jvhost-rbd"), "a Ceph cluster only when asked for");
        assertFalse(new BlkBench.Options().targets.contains("jvhost-file-uring"), "the file store forced onto io_uring only when asked for");
        BenchCommand.Net net = (BenchCommand.Net) parse("net", "--backends", "dpdk,dpdk-nohuge");
        assertEquals(List.of("dpdk", "dpdk-nohuge"), net.options().backends);
        assertFalse(new NetBench.Options().backends.contains("dpdk-nohuge"), "DPDK without hugepages only when asked for");

        BenchCommand.Blk typo = (BenchCommand.Blk) parse("blk", "--targets", "jvhost-nul");
        CommandLine.ParameterException e = assertThrows(CommandLine.ParameterException.class, typo::options);
        assertEquals("--targets: no jvhost-nul; give some of jvhost-ram, jvhost-ram-written, jvhost-file, jvhost-file-uring,"
                + " jvhost-file-threads, jvhost-null, qsd, qsd-uring, qsd-null, qsd-null-zeroes, jvhost-rbd, qsd-rbd, jvhost-nbd,"
                + " qsd-nbd, spdk-null",
                e.getMessage());
        BenchCommand.Blk spdk = (BenchCommand.Blk) parse("blk", "--targets", "jvhost-null,spdk-null", "--spdk", "/opt/spdk");
        assertEquals(Path.of("/opt/spdk"), spdk.options().spdk, "SPDK's tree or its vhost binary");
        assertFalse(spdk.options().guestHugepages, "4 KiB pages unless told (SPDK's run puts them on hugepages itself)");
        assertTrue(((BenchCommand.Blk) parse("blk", "--guest-hugepages")).options().guestHugepages);
        BenchCommand.Net unknown = (BenchCommand.Net) parse("net", "--backends", "spdk");
        assertThrows(CommandLine.ParameterException.class, unknown::options);
    }

    @Test
    void shouldRunTcpsJvhostAsTheCliRunsItUnlessToldAndRefuseUnknownSides() {
        TcpBench.Options plain = ((BenchCommand.Tcp) parse("tcp")).options();
        assertEquals(IdleMode.ADAPTIVE, plain.idle, "the CLI's default idle mode");
        assertEquals(0, plain.coalesceFrames, "no call coalescing, as the CLI");
        assertEquals(List.of("jvhost", "jvhost-no-offload", "qemu-tap"), plain.sides);
        TcpBench.Options o = ((BenchCommand.Tcp) parse("tcp", "--idle", "event", "--coalesce-frames", "8", "--coalesce-usecs", "20",
                "--sides", "jvhost,jvhost-event,qemu-tap-intx")).options();
        assertEquals(IdleMode.EVENT, o.idle);
        assertEquals(8, o.coalesceFrames);
        assertEquals(20, o.coalesceUsecs);
        assertEquals(List.of("jvhost", "jvhost-event", "qemu-tap-intx"), o.sides);
        BenchCommand.Tcp typo = (BenchCommand.Tcp) parse("tcp", "--sides", "qemu-vhost");
        assertThrows(CommandLine.ParameterException.class, typo::options);
    }

    @Test
    void shouldSayInOneLineWhatDpdkLacksBeforeBenchNetStarts(@TempDir Path dir) throws Exception {
        Path mounts = dir.resolve("mounts"), pages = dir.resolve("hugepages");
        Files.createDirectories(pages);
        Files.writeString(mounts, "proc /proc proc rw 0 0\n");
        Failure missing = assertThrows(Failure.class,
                () -> BenchCommand.Net.checkHugepages(List.of("hugepages (echo 1024 > /proc/sys/vm/nr_hugepages)"), mounts, pages));
        assertEquals("needs hugepages (echo 1024 > /proc/sys/vm/nr_hugepages) (as root, ./jvhost bench sets these up)",
                missing.getMessage());
        Failure notMounted = assertThrows(Failure.class, () -> BenchCommand.Net.checkHugepages(List.of(), mounts, pages));
        assertEquals("no hugetlbfs on " + pages + " for dpdk-testpmd (as root: mkdir -p " + pages + "; mount -t hugetlbfs nodev "
                + pages + ")", notMounted.getMessage());
        Files.writeString(mounts, "nodev " + pages + " hugetlbfs rw,relatime,pagesize=2M 0 0\n");
        BenchCommand.Net.checkHugepages(List.of(), mounts, pages); // reserved, mounted, writable: no complaint
        if (!"root".equals(System.getProperty("user.name"))) {
            assertTrue(pages.toFile().setWritable(false, false));
            Failure denied = assertThrows(Failure.class, () -> BenchCommand.Net.checkHugepages(List.of(), mounts, pages));
            assertTrue(denied.getMessage().startsWith("no permission to use the hugepages in " + pages), denied.getMessage());
        }
    }
}
