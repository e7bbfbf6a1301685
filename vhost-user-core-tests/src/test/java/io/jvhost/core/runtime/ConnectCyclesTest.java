package io.jvhost.core.runtime;

import io.jvhost.core.device.ProtocolFeatures;
import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.testkit.Payloads.NONE;
import static io.jvhost.core.device.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.Frontend.Inflight;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.Mappings;
import io.jvhost.core.sys.UnixSockets;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.Footprint;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.core.device.VirtioFeatures;

import java.io.IOException;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A hundred whole sessions against one backend, each as QEMU 7.2 runs one: handshake, backend
 * channel, masked call/err eventfds, an inflight region, guest memory in two regions, two running
 * queues carrying traffic, every fourth session a dirty log with LOG_ALL on; then the frontend
 * leaves, half the time after stopping the rings like a VM shutdown and half the time abruptly
 * with requests still in the rings. Afterwards the process holds exactly the fds, shared mappings
 * and threads it held before the first of them.
 */
@Timeout(value = 5, unit = TimeUnit.MINUTES)
class ConnectCyclesTest {
    private static final Logger LOG = LoggerFactory.getLogger(ConnectCyclesTest.class);
    static final int CYCLES = 100;
    static final int QUEUE_SIZE = 64;
    static final long RAM_BYTES = 2 << 20;
    static final long LOG_ALL = bit(VirtioFeatures.LOG_ALL);
    static final long INFLIGHT_SHMFD = ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD);
    static final Duration SETTLE = Duration.ofSeconds(30);

    /** One session; returns the echo round trips it completed. */
    private static int session(BackendFixture fx, int cycle) throws IOException {
        int echoes = 0;
        Fd[] channel = UnixSockets.pair();
        try (Fd peer = channel[0]; GuestRam ram = new GuestRam(RAM_BYTES, RAM_BYTES / 2);
             DriverQueue q0 = new DriverQueue(ram, 0, QUEUE_SIZE); DriverQueue q1 = new DriverQueue(ram, 1, QUEUE_SIZE);
             Fd masked = io.jvhost.core.sys.EventFd.create(); Fd err = io.jvhost.core.sys.EventFd.create();
             Frontend f = fx.connect()) {
            long offered = f.handshakeLikeQemu(2);
            assertEquals(0, f.request(SET_BACKEND_REQ_FD, NONE, channel[1]), "SET_BACKEND_REQ_FD");
            channel[1].close();
            for (int v = 0; v < 2; v++) {
                assertEquals(0, f.setVringCall(v, masked));
                assertEquals(0, f.setVringErr(v, err));
            }
            long features = (offered & ~LOG_ALL) | bit(VirtioFeatures.PROTOCOL_FEATURES);
            try (Inflight inflight = f.getInflightFd(2, QUEUE_SIZE)) {
                assertEquals(0, f.setInflightFd(inflight));
            }
            f.startLikeQemu(features, ram, q0, q1);
            if (cycle % 4 == 0) {
                try (Fd log = Mappings.memfd("jvhost-cycle-log", 4096)) {
                    assertEquals(0, f.call(SET_LOG_BASE, Payloads.logBase(4096, 0), log).payload().length);
                }
                assertEquals(0, f.setFeatures(features | LOG_ALL));
            }
            for (int i = 0; i < 4; i++) {
                Traffic.echo(q0, cycle * 8 + i);
                Traffic.echo(q1, cycle * 8 + 4 + i);
                echoes += 2;
            }
            if (cycle == 1) {
                LOG.info("connect cycles: during session 1 (test and backend both map guest RAM): {}", Footprint.now());
            }
            if (cycle % 2 == 0) {
                f.stopLikeQemu(q0, q1); // a VM that stops, then quits
            } else {
                for (int i = 0; i < 8; i++) { // a frontend that dies with requests in the rings
                    q0.post(Traffic.request(ram, Traffic.pattern(128, i)).buffers());
                    q1.post(Traffic.request(ram, Traffic.pattern(128, i + 8)).buffers());
                }
            }
        }
        return echoes;
    }

    @Test
    void shouldHoldTheSameFdsMappingsAndThreadsAfterAHundredSessionsAsBefore() throws IOException {
        Map<Integer, String> beforeFds;
        Footprint before, after;
        int echoes = 0;
        try (BackendFixture fx = BackendFixture.start(TestDevice.withQueues(2).protocolFeatures(INFLIGHT_SHMFD).build())) {
            // One session first: classes, jars and lazily opened files are in place before counting.
            session(fx, 0);
            fx.awaitSessionsEnded();
            beforeFds = OpenFds.snapshot();
            before = Footprint.now();
            LOG.info("connect cycles: before {} sessions: {}", CYCLES, before);
            long t0 = System.nanoTime();
            for (int cycle = 1; cycle <= CYCLES; cycle++) {
                echoes += session(fx, cycle);
            }
            fx.awaitSessionsEnded();
            after = Footprint.awaitReturnTo(before, beforeFds, SETTLE);
            LOG.info("connect cycles: after {} sessions ({} echo round trips, {} ms): {}", CYCLES, echoes,
                    TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0), after);
            assertEquals(CYCLES + 1 + 2, fx.server().connections(), "every session was a connection of its own");
        }
        assertTrue(before.sameAs(after));
        assertEquals(CYCLES * 8, echoes);
    }
}
