package io.jvhost.perf;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@link TcpBench}'s readings of what a guest prints: iperf3's receiver rate, the interrupts of
 * its virtio lines in {@code /proc/interrupts} (INTx and MSI-X as Linux 6.1 names them) and its
 * NIC's counters; and what one window between two probes comes to.
 */
class TcpBenchTest {
    /** A guest with jvhost's NIC: vectors=0, one shared INTx line. */
    static final String INTX = """
                       CPU0
              0:         38   IO-APIC   2-edge      timer
              4:        612   IO-APIC   4-edge      ttyS0
             11:      20480   IO-APIC  11-fasteoi   virtio0
            NMI:          0   Non-maskable interrupts
            """;
    /** QEMU's own NIC with MSI-X: a vector per queue and one for configuration changes. */
    static final String MSIX = """
                       CPU0
             24:          1   PCI-MSI 49152-edge      virtio0-config
             25:       3000   PCI-MSI 49153-edge      virtio0-input.0
             26:        500   PCI-MSI 49154-edge      virtio0-output.0
            LOC:      99999   Local timer interrupts
            """;

    @Test
    void shouldCountOnlyTheVirtioLinesOfProcInterrupts() {
        assertEquals(20480, TcpBench.guestIrqs(INTX));
        assertEquals(3501, TcpBench.guestIrqs(MSIX));
    }

    @Test
    void shouldReadTheFourNicCountersAfterTheInterrupts() {
        assertArrayEquals(new long[] {10, 655360, 20, 1320}, TcpBench.guestStats(INTX + "stats 10 655360 20 1320\n"));
        assertArrayEquals(new long[4], TcpBench.guestStats(INTX), "zeros when the NIC was not there");
    }

    @Test
    void shouldReadIperfsReceiverRateInMegabits() {
        String out = "[  5]   0.00-5.00   sec  1.10 GBytes  1.89 Gbits/sec                  receiver\n";
        assertEquals(1890, TcpBench.mbits(out), 1e-9);
        assertEquals(Double.NaN, TcpBench.mbits("iperf3: error - unable to connect to server"));
    }

    @Test
    void shouldPutAWindowsInterruptsCallsAndCpuPerMegabyteMoved() {
        TcpBench.Probe before = new TcpBench.Probe(0, 100, 10, 1_000_000, 50, 5_000, 1_000_000_000L, 0, 0, 40, 7);
        TcpBench.Probe after = new TcpBench.Probe(2_000_000_000L, 2_100, 110, 101_000_000, 2_050, 105_000, 3_000_000_000L,
                500_000_000L, 1_000_000_000L, 1_040, 207);
        TcpBench.Window up = TcpBench.Window.between(before, after, true);
        assertEquals(100, up.megabytes(), 1e-9);
        assertEquals(20, up.irqsPerMb(), 1e-9, "2000 interrupts for 100 MB");
        assertEquals(1_000_000, up.bytesPerPacket(), 1e-9, "100 MB in 100 packets: the guest's GSO segments");
        assertEquals(100, up.vcpuPercent(), 1e-9, "2 s of vCPU in 2 s");
        assertEquals(25, up.mainPercent(), 1e-9);
        assertEquals(50, up.pollerPercent(), 1e-9);
        assertEquals(10, up.callsPerMb(), 1e-9);
        assertEquals(2, up.kicksPerMb(), 1e-9);
        TcpBench.Probe noJvhost = new TcpBench.Probe(0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1);
        TcpBench.Window qemu = TcpBench.Window.between(noJvhost, after, false);
        assertEquals(Double.NaN, qemu.callsPerMb(), "QEMU's own NIC has no calls to count");
        assertEquals(Double.NaN, qemu.pollerPercent());
        assertEquals(105_000 / 2_050.0, qemu.bytesPerPacket(), 1e-9, "host to guest: the receive counters");
    }
}
