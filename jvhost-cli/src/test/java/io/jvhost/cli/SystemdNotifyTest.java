package io.jvhost.cli;

import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.UnixSockets;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Under systemd ({@code Type=notify}) the CLI tells the service manager it is ready only once its
 * socket listens, so that a VM ordered after the unit finds it, and that it is stopping on SIGTERM.
 * The test plays systemd: it binds the datagram socket and passes it in {@code NOTIFY_SOCKET}.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class SystemdNotifyTest {
    @TempDir
    Path dir;

    private static String awaitDatagram(Fd receiver, CliProcess p, Duration timeout) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        for (byte[] d; ; Thread.sleep(5)) {
            if ((d = UnixSockets.receive(receiver)) != null) {
                return new String(d, StandardCharsets.UTF_8);
            }
            assertTrue(System.nanoTime() < deadline, "no datagram within " + timeout + ":\n" + p.output());
        }
    }

    @Test
    void shouldSendReadyOnlyOnceTheSocketListensAndStoppingOnSigterm() throws Exception {
        Path notify = dir.resolve("notify"), socket = dir.resolve("rng.sock");
        try (Fd receiver = UnixSockets.bindDatagram(notify);
             CliProcess p = CliProcess.start(dir, List.of(), Map.of("NOTIFY_SOCKET", notify.toString()),
                     "rng", "--socket", socket.toString())) {
            String ready = awaitDatagram(receiver, p, Duration.ofSeconds(30));
            boolean listening = UnixSockets.isListening(socket); // at once: READY must not come before this holds
            assertTrue(ready.lines().anyMatch("READY=1"::equals), ready);
            assertTrue(listening, "the socket listens when READY=1 arrives:\n" + p.output());
            assertTrue(ready.lines().anyMatch(("MAINPID=" + p.process.pid())::equals), ready);
            assertTrue(ready.contains("STATUS=1 sockets listening"), ready);

            assertEquals(0, p.terminate(), p.output());
            assertEquals("STOPPING=1", awaitDatagram(receiver, p, Duration.ofSeconds(5)));
        }
    }

    @Test
    void shouldSendReadyOnceEveryDeviceOfAServeConfigListensAndStoppingOnSigterm() throws Exception {
        Path notify = dir.resolve("notify"), a = dir.resolve("a.sock"), b = dir.resolve("b.sock");
        Path config = java.nio.file.Files.writeString(dir.resolve("serve.yaml"), "devices:\n  - {type: rng, socket: " + a
                + "}\n  - {type: blk, socket: " + b + ", ram: 1M}\n");
        try (Fd receiver = UnixSockets.bindDatagram(notify);
             CliProcess p = CliProcess.start(dir, List.of(), Map.of("NOTIFY_SOCKET", notify.toString()),
                     "serve", "--config", config.toString())) {
            String ready = awaitDatagram(receiver, p, Duration.ofSeconds(30));
            boolean listening = UnixSockets.isListening(a) && UnixSockets.isListening(b);
            assertTrue(ready.lines().anyMatch("READY=1"::equals), ready);
            assertTrue(listening, "every socket listens when READY=1 arrives:\n" + p.output());
            assertTrue(ready.contains("STATUS=2 of 2 devices serving"), ready);

            assertEquals(0, p.terminate(), p.output());
            assertEquals("STOPPING=1", awaitDatagram(receiver, p, Duration.ofSeconds(5)));
        }
    }

    @Test
    void shouldHaveTheSuccessorOfALiveUpgradeSayMainpidAndReadyWhileTheOldOneSaysNothingMore() throws Exception {
        Path notify = dir.resolve("notify"), socket = dir.resolve("rng.sock");
        String[] rng = {"rng", "--socket", socket.toString(), "--handover", dir.resolve("rng.handover").toString()};
        try (Fd receiver = UnixSockets.bindDatagram(notify);
             CliProcess old = CliProcess.start(dir, List.of(), Map.of("NOTIFY_SOCKET", notify.toString()), rng)) {
            assertTrue(awaitDatagram(receiver, old, Duration.ofSeconds(30)).contains("READY=1"));
            try (CliProcess next = CliProcess.start(dir, List.of(), Map.of("NOTIFY_SOCKET", notify.toString()), rng)) {
                // Before TAKEN, after which the old main process exits: systemd must know the new one by then.
                assertEquals("MAINPID=" + next.process.pid(), awaitDatagram(receiver, next, Duration.ofSeconds(60)));
                String ready = awaitDatagram(receiver, next, Duration.ofSeconds(30));
                assertTrue(ready.lines().anyMatch("READY=1"::equals) && ready.contains("MAINPID=" + next.process.pid()), ready);
                assertTrue(old.process.waitFor(30, TimeUnit.SECONDS));
                assertEquals(0, old.process.exitValue(), old.output());
                assertEquals(null, UnixSockets.receive(receiver), "the old process sent no STOPPING=1: the service goes on");
                assertEquals(0, next.terminate(), next.output());
                assertEquals("STOPPING=1", awaitDatagram(receiver, next, Duration.ofSeconds(5)));
            }
        }
    }
}
