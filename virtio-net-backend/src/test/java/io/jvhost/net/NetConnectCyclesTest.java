package io.jvhost.net;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.testkit.Footprint;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.Traffic;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * A NIC with two queue pairs on a reflecting port served to a hundred frontends in a row, each
 * connecting as QEMU 7.2 does, starting both pairs, sending frames that come back on its receive
 * rings, and leaving (half after stopping the rings, half abruptly with frames still queued).
 * Afterwards the process holds the fds, shared mappings and threads it held before.
 */
@Timeout(value = 5, unit = TimeUnit.MINUTES)
class NetConnectCyclesTest {
    private static final Logger LOG = LoggerFactory.getLogger(NetConnectCyclesTest.class);
    static final int CYCLES = 100;
    static final int QUEUE_SIZE = 64;
    static final int FRAME = 64;
    static final Duration USED_TIMEOUT = Duration.ofSeconds(10);

    /** A frame from the guest's MAC to a neighbour's, its payload naming the session and pair. */
    static byte[] frame(int cycle, int pair) {
        byte[] f = Traffic.pattern(FRAME, cycle * 2 + pair);
        byte[] dst = {0x52, 0x54, 0, 0, 0, 0x02}, src = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
        System.arraycopy(dst, 0, f, 0, 6);
        System.arraycopy(src, 0, f, 6, 6);
        return f;
    }

    private static int session(Path socket, int cycle) throws IOException {
        int reflected = 0;
        try (GuestRam ram = new GuestRam(4 << 20); Frontend f = Frontend.connect(socket, 10_000).replyTimeout(USED_TIMEOUT)) {
            DriverQueue[] q = new DriverQueue[4];
            for (int i = 0; i < q.length; i++) {
                q[i] = new DriverQueue(ram, i, QUEUE_SIZE);
            }
            try {
                long offered = f.handshakeLikeQemu(4);
                long features = offered & (NetRig.MODERN | NetRig.MQ | NetRig.MRG_RXBUF);
                f.startLikeQemu(features, ram, q);
                for (int pair = 0; pair < 2; pair++) {
                    DriverQueue rx = q[2 * pair], tx = q[2 * pair + 1];
                    long rxGpa = ram.allocate(2048, 8);
                    int rxHead = rx.post(Buffer.writable(rxGpa, 2048));
                    byte[] frame = frame(cycle, pair);
                    long hdr = Traffic.place(ram, new byte[NetRig.HEADER]);
                    tx.post(Buffer.readable(hdr, NetRig.HEADER), Buffer.readable(Traffic.place(ram, frame), frame.length));
                    assertNotNull(tx.awaitUsed(USED_TIMEOUT), "frame sent");
                    Used u = rx.awaitUsed(USED_TIMEOUT);
                    assertNotNull(u, "frame reflected");
                    assertEquals(rxHead, u.id());
                    assertEquals(NetRig.HEADER + FRAME, u.length());
                    byte[] got = ram.at(rxGpa + NetRig.HEADER, FRAME).toArray(ValueLayout.JAVA_BYTE);
                    assertArrayEquals(Arrays.copyOfRange(frame, 12, FRAME), Arrays.copyOfRange(got, 12, FRAME));
                    assertArrayEquals(Arrays.copyOfRange(frame, 6, 12), Arrays.copyOfRange(got, 0, 6), "MACs swapped");
                    reflected++;
                }
                if (cycle % 2 == 0) {
                    f.setStatus(0);
                    for (DriverQueue d : q) {
                        f.getVringBase(d.index()); // QEMU 7.2 net stop: no SET_VRING_ENABLE(0)
                    }
                } else {
                    for (int i = 0; i < 8; i++) {
                        q[1].post(Buffer.readable(Traffic.place(ram, frame(cycle, 0)), FRAME));
                    }
                }
            } finally {
                for (DriverQueue d : q) {
                    d.close();
                }
            }
        }
        return reflected;
    }

    @Test
    void shouldHoldTheSameFdsMappingsAndThreadsAfterAHundredSessionsWithFrames() throws Exception {
        Path dir = Files.createTempDirectory("jvhost-net-cycles");
        int reflected = 0;
        try (ControlLoop loop = new ControlLoop();
             Backend backend = new Backend("net-cycles", new NetDevice(new BenchPorts.Reflect(), 2, NetRig.GUEST_MAC,
                     NetDevice.DEFAULT_MTU), BackendOptions.DEFAULT, loop)) {
            backend.start();
            try (VhostUserServer server = VhostUserServer.listen(dir.resolve("net.sock"), backend, loop)) {
                session(server.path(), 0);
                awaitSessionsEnded(server.path());
                Map<Integer, String> beforeFds = OpenFds.snapshot();
                Footprint before = Footprint.now();
                LOG.info("net connect cycles: before {} sessions: {}", CYCLES, before);
                long t0 = System.nanoTime();
                for (int cycle = 1; cycle <= CYCLES; cycle++) {
                    reflected += session(server.path(), cycle);
                }
                awaitSessionsEnded(server.path());
                Footprint after = Footprint.awaitReturnTo(before, beforeFds, Duration.ofSeconds(30));
                LOG.info("net connect cycles: after {} sessions ({} frames reflected, {} ms): {}", CYCLES, reflected,
                        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0), after);
            }
        } finally {
            Files.deleteIfExists(dir);
        }
        assertEquals(2 * CYCLES, reflected);
    }

    private static void awaitSessionsEnded(Path socket) throws IOException {
        try (Frontend f = Frontend.connect(socket, 10_000).replyTimeout(USED_TIMEOUT)) {
            f.getFeatures();
        }
    }
}
