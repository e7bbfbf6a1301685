package io.jvhost.cli.serve;

import io.jvhost.testkit.QemuConfigs;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import javax.xml.parsers.DocumentBuilderFactory;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * qemu-configs/serve.yaml is a config serve accepts, serve-libvirt.xml attaches exactly its devices
 * (same sockets, queues and MAC), and jvhost-serve.service runs it as a Type=notify unit that
 * checks the config first and that systemd finds nothing to warn about.
 */
class ServeConfigsTest {
    @TempDir
    Path dir;

    private static Path configs() {
        return QemuConfigs.root().resolve("qemu-configs");
    }

    /** serve.yaml, its libvirt users swapped for root where this machine has no libvirt (the check looks them up). */
    private static String serveYaml() throws Exception {
        String yaml = Files.readString(configs().resolve("serve.yaml"));
        boolean libvirt = new ProcessBuilder("id", "libvirt-qemu").start().waitFor() == 0;
        boolean kvm = new ProcessBuilder("getent", "group", "kvm").start().waitFor() == 0;
        if (!libvirt || !kvm) {
            System.err.println("serve.yaml checked with root for " + (libvirt ? "" : "libvirt-qemu ") + (kvm ? "" : "kvm")
                    + ": not on this machine");
        }
        return yaml.replace("libvirt-qemu", libvirt ? "libvirt-qemu" : "root").replace("socket-group: kvm", kvm ? "socket-group: kvm" : "socket-group: root");
    }

    @Test
    void shouldAcceptTheExampleConfig() throws Exception {
        ServeConfig c = ServeConfig.read(serveYaml());
        assertEquals(List.of(), c.problems);
        assertEquals(List.of("vm1-disk blk", "vm1-nic net", "vm1-rng rng"),
                c.devices.stream().map(d -> d.name() + " " + d.type()).toList());
        assertEquals(Path.of("/run/jvhost/control.sock"), c.control);
        assertEquals(9100, c.metrics.getPort());
    }

    @Test
    void shouldAttachTheConfigsDevicesInTheLibvirtDomain() throws Exception {
        ServeConfig c = ServeConfig.read(serveYaml());
        Map<String, ServeConfig.DeviceSpec> bySocket = new HashMap<>();
        for (ServeConfig.DeviceSpec d : c.devices) {
            bySocket.put(d.command().serveOptions().sockets().get(0).toString(), d);
        }
        Document xml = DocumentBuilderFactory.newInstance().newDocumentBuilder().parse(configs().resolve("serve-libvirt.xml").toFile());
        Element memory = (Element) xml.getElementsByTagName("memoryBacking").item(0);
        assertEquals("shared", ((Element) memory.getElementsByTagName("access").item(0)).getAttribute("mode"));

        Element disk = (Element) xml.getElementsByTagName("disk").item(0);
        assertEquals("vhostuser", disk.getAttribute("type"));
        Map<?, ?> diskConfig = (Map<?, ?>) bySocket.get(source(disk)).source();
        assertEquals("blk", diskConfig.get("type"));
        assertEquals(diskConfig.get("queues"), ((Element) disk.getElementsByTagName("driver").item(0)).getAttribute("queues"));

        Element nic = (Element) xml.getElementsByTagName("interface").item(0);
        Map<?, ?> nicConfig = (Map<?, ?>) bySocket.get(source(nic)).source();
        assertEquals("net", nicConfig.get("type"));
        assertEquals(nicConfig.get("mac"), ((Element) nic.getElementsByTagName("mac").item(0)).getAttribute("address"));

        List<String> args = new ArrayList<>();
        NodeList qemu = xml.getElementsByTagName("qemu:arg");
        for (int i = 0; i < qemu.getLength(); i++) {
            args.add(((Element) qemu.item(i)).getAttribute("value"));
        }
        String rngSocket = bySocket.entrySet().stream().filter(e -> e.getValue().type().equals("rng")).findFirst().orElseThrow().getKey();
        assertTrue(args.stream().anyMatch(a -> a.startsWith("socket,") && a.contains("path=" + rngSocket + ",")), args.toString());
        assertTrue(args.stream().anyMatch(a -> a.startsWith("vhost-user-rng-pci,")), args.toString());
    }

    private static String source(Element device) {
        return ((Element) device.getElementsByTagName("source").item(0)).getAttribute("path");
    }

    private static String value(String unit, String key) {
        return unit.lines().filter(l -> l.startsWith(key + "=")).map(l -> l.substring(key.length() + 1))
                .findFirst().orElseThrow(() -> new AssertionError("no " + key + "= in the unit"));
    }

    @Test
    void shouldRunServeAsANotifyServiceThatChecksItsConfigFirst() throws Exception {
        String unit = Files.readString(configs().resolve("jvhost-serve.service"));
        assertEquals("notify", value(unit, "Type"));
        assertEquals("all", value(unit, "NotifyAccess"), "a live upgrade's successor says MAINPID before it is the main process");
        assertEquals("/usr/bin/setsid --fork /opt/jvhost/jvhost serve --config /etc/jvhost/serve.yaml", value(unit, "ExecReload"),
                "reload runs the same serve again, detached: the live upgrade");
        assertEquals("/opt/jvhost/jvhost serve --check --config /etc/jvhost/serve.yaml", value(unit, "ExecStartPre"));
        assertEquals("/opt/jvhost/jvhost serve --config /etc/jvhost/serve.yaml", value(unit, "ExecStart"));
        assertEquals("jvhost", value(unit, "RuntimeDirectory"), "serve.yaml's sockets are under /run/jvhost");
        assertEquals(0, io.jvhost.cli.Main.commandLine().parseArgs("serve", "--config", "/etc/jvhost/serve.yaml")
                .subcommand().errors().size());

        Path analyze = Path.of("/usr/bin/systemd-analyze");
        if (!Files.isExecutable(analyze)) {
            System.err.println("SKIPPED systemd-analyze verify of jvhost-serve.service: no systemd-analyze");
            return;
        }
        Path instance = dir.resolve("jvhost-serve.service");
        Files.writeString(instance, unit.replace("/opt/jvhost/jvhost", QemuConfigs.root().resolve("jvhost").toString()));
        Process p = new ProcessBuilder(analyze.toString(), "verify", instance.toString()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), out);
        assertEquals("", out.strip(), "no warnings");
    }
}
