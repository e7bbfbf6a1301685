package io.jvhost.cli.serve;

import io.jvhost.cli.blk.BlkCommand;
import io.jvhost.cli.net.NetCommand;
import io.jvhost.cli.rng.RngCommand;

import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A serve config's devices go through their commands' own option parsing and checks, and each
 * problem names the line and column of the key it is about.
 */
class ServeConfigTest {
    private static List<String> problems(String yaml) {
        return ServeConfig.read(yaml).problems.stream().map(p -> p.format("c.yaml")).toList();
    }

    @Test
    void shouldMakeEachDeviceWithItsCommandsOptions() {
        ServeConfig c = ServeConfig.read("""
                metrics: 127.0.0.1:9100
                devices:
                  - type: rng
                    socket: /run/jvhost/rng.sock
                  - type: blk
                    name: disk0
                    socket: /run/jvhost/disk0.sock
                    ram: 64M
                    queues: 2
                    queue-map: "0:1"
                    read-only: true
                  - type: net
                    socket: [/run/jvhost/n0.sock, /run/jvhost/n1.sock]
                    switch: true
                  - type: net
                    socket: /run/jvhost/n2.sock
                    switch: lan1
                """);
        assertEquals(List.of(), c.problems);
        assertEquals(9100, c.metrics.getPort());
        assertEquals(List.of("rng0", "disk0", "net0", "net1"), c.devices.stream().map(ServeConfig.DeviceSpec::name).toList());
        assertInstanceOf(RngCommand.class, c.devices.get(0).command());
        assertInstanceOf(BlkCommand.class, c.devices.get(1).command());
        assertInstanceOf(NetCommand.class, c.devices.get(2).command());
        assertEquals(List.of(Path.of("/run/jvhost/n0.sock"), Path.of("/run/jvhost/n1.sock")),
                c.devices.get(2).command().serveOptions().sockets());
        assertEquals(ServeConfig.DEFAULT_SWITCH, c.devices.get(2).switchName());
        assertEquals("lan1", c.devices.get(3).switchName());
        assertNull(c.devices.get(1).switchName());
    }

    @Test
    void shouldReportEachProblemAtTheLineAndColumnOfItsKey() {
        List<String> p = problems("""
                bogus: 1
                devices:
                  - type: blk
                    socket: /run/jvhost/b.sock
                    ram: 1G
                    queues: 0
                  - type: net
                    socket: /run/jvhost/n.sock
                    switch: true
                    mac: 01:00:00:00:00:01
                  - type: blk
                    socket: /run/jvhost/c.sock
                    ram: 1Q
                  - type: rng
                    socket: /run/jvhost/r.sock
                    tapp: x
                  - type: rng
                    socket: /run/jvhost/r2.sock
                    metrics: 127.0.0.1:1
                  - type: disk
                """);
        assertEquals(7, p.size(), String.join("\n", p));
        assertTrue(p.get(0).startsWith("c.yaml:1:1: unknown key 'bogus'"), p.get(0));
        assertEquals("c.yaml:6:5: devices[0] (blk0): --queues must be 1..64 (one per guest vCPU), got 0", p.get(1));
        assertTrue(p.get(2).startsWith("c.yaml:10:5: devices[1] (net0): --mac 01:00:00:00:00:01 is a multicast address"), p.get(2));
        assertTrue(p.get(3).startsWith("c.yaml:13:5: devices[2] (blk1): Invalid value for option '--ram': '1Q' is not a size"), p.get(3));
        assertTrue(p.get(4).startsWith("c.yaml:16:5: devices[3] (rng0): unknown option 'tapp' for a rng device"), p.get(4));
        assertTrue(p.get(5).startsWith("c.yaml:19:5: devices[4] (rng1): 'metrics' is for the whole process"), p.get(5));
        assertEquals("c.yaml:20:5: devices[5]: 'type' must be blk, net or rng, got 'disk'", p.get(6));
    }

    @Test
    void shouldRefuseAHandoverOrControlThatIsNotOnePath() {
        assertEquals(List.of("c.yaml:1:1: handover: the path of the live-upgrade socket",
                        "c.yaml:2:1: control: the path of the control socket"),
                problems("""
                        handover: [/run/jvhost/a.sock, /run/jvhost/b.sock]
                        control: {path: /run/jvhost/c.sock}
                        devices:
                          - {type: rng, socket: /run/jvhost/r.sock}
                        """));
    }

    @Test
    void shouldRefuseAHandoverOrControlWithNothingAfterTheColon() {
        assertEquals(List.of("c.yaml:1:1: handover: the path of the live-upgrade socket",
                        "c.yaml:2:1: control: the path of the control socket"),
                problems("""
                        handover:
                        control: ""
                        devices:
                          - {type: rng, socket: /run/jvhost/r.sock}
                        """));
    }

    @Test
    void shouldPointAtTheDeviceWhenARequiredOptionIsMissing() {
        assertEquals(List.of("c.yaml:3:5: devices[1] (blk0): Missing required argument (specify one of these):"
                        + " (--file=IMAGE | --ram=SIZE | --null=SIZE | --rbd=POOL/IMAGE | --nbd=URI)"),
                problems("""
                        devices:
                          - {type: rng, socket: /run/jvhost/r.sock}
                          - type: blk
                            socket: /run/jvhost/b.sock
                        """));
    }

    @Test
    void shouldReportAYamlSyntaxErrorAtItsPlaceWithoutSnakeYamlsEcho() {
        List<String> p = problems("devices:\n  - type: rng\n    socket: [a\n");
        assertEquals(1, p.size());
        assertTrue(p.get(0).matches("c\\.yaml:\\d+:\\d+: not valid YAML: [^\\n]*"), p.get(0));
        assertTrue(!p.get(0).contains("in 'reader'"), p.get(0));
    }

    @Test
    void shouldRefuseTwoDevicesWithOneNameOrOneSocket() {
        List<String> p = problems("""
                devices:
                  - {type: rng, name: a, socket: /run/jvhost/r.sock}
                  - {type: rng, name: a, socket: /run/jvhost/s.sock}
                  - {type: rng, name: b, socket: /run/jvhost/r.sock}
                """);
        assertEquals(2, p.size(), String.join("\n", p));
        assertTrue(p.get(0).startsWith("c.yaml:3:17: devices[1]: name 'a' is taken by the device at line 2"), p.get(0));
        assertTrue(p.get(1).startsWith("c.yaml:4:26: devices[2] (b): socket /run/jvhost/r.sock is also the socket of the device at line 2"), p.get(1));
    }

    @Test
    void shouldGiveTheTopLevelSocketAccessToEveryListeningDeviceThatDoesNotSetItsOwn() {
        ServeConfig c = ServeConfig.read("""
                socket-mode: "0660"
                allow-uid: [root]
                devices:
                  - {type: rng, socket: /run/jvhost/a.sock}
                  - {type: rng, socket: /run/jvhost/b.sock, socket-mode: "0600"}
                  - {type: rng, socket: /run/jvhost/c.sock, client: true}
                """);
        assertEquals(List.of(), c.problems);
        assertEquals(java.util.Arrays.asList("0660", "0600", null), c.devices.stream().map(d -> {
            Object mode = d.command().serveOptions().socketMode();
            return mode == null ? null : String.format("%04o", (Integer) mode);
        }).toList());
    }

    @Test
    void shouldPutADevicesQueuesOnASharedPollerOfThePollersSection() {
        ServeConfig c = ServeConfig.read("""
                pollers:
                  io: {idle: busy, cpu: 0}
                  slow:
                devices:
                  - {type: rng, socket: /run/jvhost/a.sock, poller: slow}
                  - {type: blk, socket: /run/jvhost/b.sock, ram: 1M, queues: 2, poller: io}
                  - {type: rng, socket: /run/jvhost/c.sock}
                """);
        assertEquals(List.of(), c.problems);
        assertEquals(List.of(new ServeConfig.PollerSpec("io", "busy", 0), new ServeConfig.PollerSpec("slow", "adaptive", -1)),
                List.copyOf(c.pollers.values()));
        assertEquals(java.util.Arrays.asList("slow", "io", null), c.devices.stream().map(ServeConfig.DeviceSpec::pollerName).toList());
    }

    @Test
    void shouldRefuseAnUnknownPollerAndAQueueMapBesideASharedPoller() {
        List<String> p = problems("""
                pollers:
                  io: {spin: true}
                devices:
                  - {type: rng, socket: /run/jvhost/a.sock, poller: fast}
                  - {type: blk, socket: /run/jvhost/b.sock, ram: 1M, queues: 2, poller: io, queue-map: "0:1"}
                """);
        assertEquals(3, p.size(), String.join("\n", p));
        assertTrue(p.get(0).startsWith("c.yaml:2:8: pollers: io: unknown setting 'spin'"), p.get(0));
        assertTrue(p.get(1).startsWith("c.yaml:4:45: devices[0] (rng0): poller: 'fast' is none of the pollers section's (io)"), p.get(1));
        assertTrue(p.get(2).startsWith("c.yaml:5:77: devices[1] (blk0): queue-map is for pollers of the device's own"), p.get(2));
    }

    @Test
    void shouldReportABadTopLevelDefaultOnceAtItsOwnLine() {
        assertEquals(List.of("c.yaml:1:1: a default for every device: Invalid value for option '--socket-mode':"
                        + " '0999' is not a file mode: octal permission bits such as 0600 or 0660"),
                problems("""
                        socket-mode: "0999"
                        devices:
                          - {type: rng, socket: /run/jvhost/a.sock}
                          - {type: rng, socket: /run/jvhost/b.sock}
                        """));
    }
}
