package io.jvhost.perf;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What {@code bench net} reads from testpmd's logs: the busy cycles per packet that
 * {@code --record-core-cycles} prints at exit, turned into nanoseconds at the TSC's clock, and the
 * frontend's busy share from them and the run's rate; none where testpmd did not print them or
 * where its txonly engine counts every poll.
 */
class NetBenchTest {
    /** What testpmd 22.11 printed at the end of a macswap backend's run (bench net, 2026-12-07). */
    private static final String MACSWAP_EXIT = """
              +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++
              RX-packets: 41610336       RX-dropped: 0             RX-total: 41610336
              TX-packets: 41610336       TX-dropped: 0             TX-total: 41610336
              ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++

              CPU cycles/packet=245.43 (total cycles=10212567246 / total macswap packets=41610336) at 2100 MHz Clock
            """;

    @Test
    void shouldTurnTestpmdsBusyCyclesPerPacketIntoNanosecondsAtItsClock() {
        assertEquals(245.43 / 2.1, NetBench.busyNanosPerPacket(MACSWAP_EXIT), 1e-9);
    }

    @Test
    void shouldKnowNoBusyTimeWhenTestpmdPrintedNone() {
        assertTrue(Double.isNaN(NetBench.busyNanosPerPacket("Bye...\n")));
    }

    @Test
    void shouldGiveTheFrontendsBusySharePercentFromItsCyclesAndTheRunsRate() {
        // 126.04 cycles at 2100 MHz = 60.0 ns a packet; at 5.976 Mpps that is 35.9 % of a core.
        String io = "  CPU cycles/packet=126.04 (total cycles=5244583302 / total io packets=41610304) at 2100 MHz Clock\n";
        assertEquals(126.04 / 2.1 * 5.976 / 10, NetBench.frontendBusy(io, "loop", 5.976), 1e-9);
        assertTrue(Double.isNaN(NetBench.frontendBusy(io, "g2h", 5.976)), "txonly counts every poll as busy");
    }
}
