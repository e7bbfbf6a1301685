package io.jvhost.cli;

import io.jvhost.cli.serve.SimulatedGuest;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code jvhost serve} as an operator runs it: {@code --check} prints each problem of a config with
 * its line and exits 2, never a stack trace; a running serve is managed over its control socket
 * (0600), where a device added at runtime serves a guest, shows in stats and goes again with its
 * socket, and malformed commands get one error line each and harm nothing.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ServeCommandTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    @Test
    void shouldPrintEachProblemWithItsLineAndColumnAndExit2OnCheck() throws Exception {
        Path config = Files.writeString(dir.resolve("serve.yaml"), """
                devices:
                  - type: blk
                    socket: /run/jvhost/b.sock
                    ram: 1Q
                  - type: net
                    socket: /run/jvhost/n.sock
                    switch: true
                    queues: 99
                  - type: rng
                """);
        CliProcess.Outcome o = CliProcess.run(dir, "serve", "--check", "--config", config.toString());
        assertEquals(2, o.exit(), o.stderr());
        List<String> lines = o.stderr().lines().toList();
        assertEquals(List.of(
                "jvhost serve: " + config + ":4:5: devices[0] (blk0): Invalid value for option '--ram': '1Q' is not a size:"
                        + " a whole number of bytes, or with a suffix K, M, G or T",
                "jvhost serve: " + config + ":8:5: devices[1] (net0): --queues must be 1..64 (queue pairs per NIC), got 99",
                "jvhost serve: " + config + ":9:5: devices[2] (rng0): Missing required option: '--socket=PATH'"), lines);
        assertFalse(o.stderr().contains("Exception") || o.stderr().contains("\tat "), o.stderr());
    }

    @Test
    void shouldSayAValidConfigHasNoProblems() throws Exception {
        Path config = Files.writeString(dir.resolve("serve.yaml"), "devices:\n  - {type: rng, socket: " + dir.resolve("r.sock") + "}\n");
        CliProcess.Outcome o = CliProcess.run(dir, "serve", "--check", "--config", config.toString());
        assertEquals(0, o.exit(), o.stderr());
        assertEquals(config + ": 1 device (rng0 rng), no problems", o.stdout().strip());
    }

    @Test
    void shouldSayInOneLineThatTheHandoverSocketsDirectoryIsMissingBeforeServingAnything() throws Exception {
        Path handover = dir.resolve("nodir").resolve("h.sock");
        Path config = Files.writeString(dir.resolve("serve.yaml"), "handover: " + handover + "\ndevices:\n"
                + "  - {type: rng, socket: " + dir.resolve("r.sock") + "}\n");
        CliProcess.Outcome o = CliProcess.run(dir, "serve", "--config", config.toString());
        assertEquals(1, o.exit(), o.stderr());
        assertEquals("jvhost serve: --handover " + handover + ": directory " + handover.getParent()
                + " does not exist (create it: mkdir -p " + handover.getParent() + ")", o.line("jvhost serve"));
        assertFalse(Files.exists(dir.resolve("r.sock")), "no device started listening");
    }

    @Test
    void shouldSayInOneLineThatTheConfigIsMissing() throws Exception {
        CliProcess.Outcome o = CliProcess.run(dir, "serve", "--config", dir.resolve("none.yaml").toString());
        assertEquals(1, o.exit());
        assertEquals("jvhost serve: --config " + dir.resolve("none.yaml") + ": no such file", o.line("jvhost serve"));
    }

    @Test
    void shouldAddServeReportAndRemoveADeviceThroughTheControlSocket() throws Exception {
        Path control = dir.resolve("control.sock"), extra = dir.resolve("extra.sock");
        Path config = Files.writeString(dir.resolve("serve.yaml"), "devices:\n  - {type: rng, name: first, socket: "
                + dir.resolve("first.sock") + "}\n");
        try (CliProcess serve = CliProcess.start(dir, List.of(), Map.of(), "serve", "--config", config.toString(),
                "--control", control.toString())) {
            serve.await(CliProcess.READY, Duration.ofSeconds(30));
            assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(control)));
            try (ControlClient c = new ControlClient(control)) {
                for (String bad : List.of("hello", "{\"command\": 7", "{\"no\":\"command\"}", "remove", "stats nobody",
                        "add {\"type\":\"rng\"}", "add {\"type\":\"rng\",\"socket\":\"" + extra + "\",\"queues\":2}")) {
                    JsonNode answer = c.send(bad);
                    assertFalse(answer.get("ok").asBoolean(), bad + " -> " + answer);
                    assertTrue(answer.get("error").asText().length() > 5, bad + " -> " + answer);
                }
                JsonNode added = c.send("{\"command\":\"add\",\"device\":{\"type\":\"rng\",\"name\":\"extra\",\"socket\":\"" + extra + "\"}}");
                assertTrue(added.get("ok").asBoolean(), added.toString());
                assertEquals("running", added.get("added").get("state").asText());
                try (SimulatedGuest guest = SimulatedGuest.start(extra)) {
                    assertEquals(100, guest.rngRead(100));
                    assertEquals(100, guest.rngRead(100));
                }
                JsonNode stats = c.send("stats extra");
                assertTrue(stats.get("ok").asBoolean(), stats.toString());
                JsonNode queue0 = stats.get("devices").get(0).get("queues").get(0);
                assertEquals(2, queue0.get("jvhost_queue_requests_total").asLong(), stats.toString());
                assertEquals(200, queue0.get("jvhost_queue_written_bytes_total").asLong(), stats.toString());
                assertEquals(0, stats.get("devices").get(0).get("values").get("jvhost_device_failed").asLong());
                assertTrue(stats.get("devices").get(0).get("values").get("jvhost_device_poller_busy_seconds_total{poller=\"0\"}")
                        .asDouble() > 0, "the poller's busy time, in seconds: " + stats);

                assertTrue(c.send("remove extra").get("ok").asBoolean());
                assertFalse(Files.exists(extra), "a removed device's socket goes");
                JsonNode list = c.send("{\"command\":\"list\"}");
                assertEquals(1, list.get("devices").size(), list.toString());
                assertEquals("first", list.get("devices").get(0).get("name").asText());
            }
            assertTrue(serve.process.isAlive(), serve.output());
            try (SimulatedGuest guest = SimulatedGuest.start(dir.resolve("first.sock"))) {
                assertEquals(32, guest.rngRead(32), "the config's device served throughout");
            }
            assertEquals(0, serve.terminate(), serve.output());
            assertFalse(Files.exists(control), "the control socket goes at exit");
        }
    }
}
