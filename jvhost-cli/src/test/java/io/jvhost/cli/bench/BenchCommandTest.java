package io.jvhost.cli.bench;

import io.jvhost.perf.BlkBench;
import io.jvhost.perf.NetBench;

import java.nio.file.Path;

import org.junit.jupiter.api.Test;

import picocli.CommandLine;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@code bench net} and {@code bench blk} take {@code --runs}, {@code --seconds} and {@code --out}
 * from one mixin: given, they reach the benchmark's options; left out, the benchmark's defaults
 * stay. Only parsed here: no benchmark runs.
 */
class BenchCommandTest {

    private static Object parse(String... args) {
        return new CommandLine(new BenchCommand()).parseArgs(args).subcommand().commandSpec().userObject();
    }

    @Test
    void shouldPassRunsSecondsAndOutToTheNetBenchmarkWhenGiven() {
        BenchCommand.Net net = (BenchCommand.Net) parse("net", "--quick", "--runs", "2", "--seconds", "4", "--out", "x");
        NetBench.Options o = net.run.applyTo(NetBench.Options.quick());
        assertEquals(2, o.runs);
        assertEquals(4, o.seconds);
        assertEquals(Path.of("x"), o.out);
    }

    @Test
    void shouldKeepTheBlkBenchmarksDefaultsWhenRunsSecondsAndOutAreLeftOut() {
        BenchCommand.Blk blk = (BenchCommand.Blk) parse("blk", "--targets", "jvhost-ram");
        BlkBench.Options defaults = new BlkBench.Options();
        BlkBench.Options o = blk.run.applyTo(new BlkBench.Options());
        assertEquals(defaults.runs, o.runs);
        assertEquals(defaults.seconds, o.seconds);
        String home = System.getProperty("jvhost.home");
        assertEquals(home == null ? Path.of("perf", "results") : Path.of(home, "perf", "results"), o.out);
    }
}
