package io.jvhost.perf;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * {@link TestpmdStats} reads the cumulative counters of testpmd's periodic statistics blocks as
 * DPDK 22.11 prints them, ignores the exit summary, and while following a growing log returns
 * only blocks written after it started waiting, each once, and never a half-written one.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class TestpmdStatsTest {
    @TempDir
    Path dir;

    /** A periodic block as {@code --stats-period=1} prints it, after the screen-clearing escapes. */
    static String block(long rx, long tx) {
        return "\u001b[2J\u001b[1;1H\nPort statistics ====================================\n"
                + "  ######################## NIC statistics for port 0  ########################\n"
                + "  RX-packets: " + rx + "  RX-missed: 0          RX-bytes:  " + rx * 60 + "\n"
                + "  RX-errors: 0\n"
                + "  RX-nombuf:  0         \n"
                + "  TX-packets: " + tx + "  TX-errors: 0          TX-bytes:  " + tx * 60 + "\n"
                + "\n  Throughput (since last show)\n"
                + "  Rx-pps:     18000123          Rx-bps:   8640059040\n"
                + "  Tx-pps:            0          Tx-bps:            0\n"
                + "  ############################################################################\n";
    }

    static final String EXIT_SUMMARY = "\n  ---------------------- Forward statistics for port 0  ----------------------\n"
            + "  RX-packets: 99999999       RX-dropped: 0             RX-total: 99999999\n"
            + "  TX-packets: 0              TX-dropped: 0             TX-total: 0\n"
            + "  ----------------------------------------------------------------------------\n";

    @Test
    void shouldReadTheCumulativeCountersOfTheLastCompleteBlock() {
        String log = "EAL: Detected CPU lcores: 2\n" + block(1000, 5) + block(19_001_000, 7) + EXIT_SUMMARY;
        assertEquals(new TestpmdStats.Counts(19_001_000, 7), TestpmdStats.lastBlock(log));
        assertEquals(19_001_000, TestpmdStats.lastBlock(log).of("h2g"));
        assertEquals(7, TestpmdStats.lastBlock(log).of("g2h"), "g2h counts what the frontend transmitted");
    }

    @Test
    void shouldFindNoBlockInTheExitSummaryOrAHalfWrittenBlock() {
        String half = block(5, 5);
        assertNull(TestpmdStats.lastBlock(EXIT_SUMMARY + half.substring(0, half.indexOf("Tx-pps"))));
    }

    @Test
    void shouldReturnOnlyBlocksWrittenAfterItStartedFollowingTheNewestFirstAndEachOnce() throws Exception {
        Path log = dir.resolve("frontend.log");
        Files.writeString(log, block(100, 0) + block(200, 0));
        Process alive = new ProcessBuilder("sleep", "30").start();
        try {
            TestpmdStats stats = new TestpmdStats(log);
            Thread writer = Thread.ofPlatform().start(() -> {
                try {
                    Thread.sleep(100);
                    String b = block(300, 0);
                    int cut = b.indexOf("Rx-pps");
                    Files.writeString(log, b.substring(0, cut), StandardOpenOption.APPEND); // testpmd mid-write
                    Thread.sleep(100);
                    Files.writeString(log, b.substring(cut), StandardOpenOption.APPEND);
                    Thread.sleep(100);
                    Files.writeString(log, block(400, 0), StandardOpenOption.APPEND);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            assertEquals(300, stats.awaitNext(alive, 5_000).rxPackets(), "not one of the blocks already there");
            assertEquals(400, stats.awaitNext(alive, 5_000).rxPackets());
            writer.join();
            assertNull(stats.awaitNext(alive, 200), "no block within the time");
            Files.writeString(log, block(500, 0) + block(600, 0), StandardOpenOption.APPEND);
            assertEquals(600, stats.awaitNext(alive, 5_000).rxPackets(), "of two new blocks, the newer");
        } finally {
            alive.destroyForcibly();
            alive.waitFor();
        }
        assertNull(new TestpmdStats(log).awaitNext(alive, 5_000), "the process has ended");
    }
}
