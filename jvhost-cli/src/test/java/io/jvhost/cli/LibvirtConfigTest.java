package io.jvhost.cli;

import io.jvhost.testkit.QemuConfigs;

import java.nio.file.Path;
import java.util.List;

import javax.xml.parsers.DocumentBuilderFactory;

import org.junit.jupiter.api.Test;
import org.w3c.dom.Document;
import org.w3c.dom.Element;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The libvirt snippets in qemu-configs/ are well-formed and describe what the tested QEMU scripts
 * attach: shared memfd memory, and a vhost-user device on a Unix socket. (libvirt itself is not on
 * the test machines, so the XML is checked here and the QEMU arguments by the guest tests.)
 */
class LibvirtConfigTest {
    private static Document parse(String name) throws Exception {
        Path xml = QemuConfigs.root().resolve("qemu-configs").resolve(name);
        return DocumentBuilderFactory.newInstance().newDocumentBuilder().parse(xml.toFile());
    }

    private static void assertSharedMemfdMemory(Document d) {
        Element source = (Element) d.getElementsByTagName("memoryBacking").item(0);
        assertEquals("memfd", ((Element) source.getElementsByTagName("source").item(0)).getAttribute("type"));
        assertEquals("shared", ((Element) source.getElementsByTagName("access").item(0)).getAttribute("mode"));
    }

    @Test
    void shouldDescribeAVhostUserDiskWithTwoQueuesOnSharedMemory() throws Exception {
        Document d = parse("blk-libvirt.xml");
        assertSharedMemfdMemory(d);
        Element disk = (Element) d.getElementsByTagName("disk").item(0);
        assertEquals("vhostuser", disk.getAttribute("type"));
        assertEquals("2", ((Element) disk.getElementsByTagName("driver").item(0)).getAttribute("queues"));
        Element source = (Element) disk.getElementsByTagName("source").item(0);
        assertEquals("unix", source.getAttribute("type"));
        assertTrue(QemuConfigs.deviceArgs("blk-qemu.sh", source.getAttribute("path"), "2")
                .contains("vhost-user-blk-pci,chardev=jvhost-blk0,num-queues=2"), "the same disk as blk-qemu.sh");
    }

    @Test
    void shouldDescribeAVhostUserNicOnSharedMemory() throws Exception {
        Document d = parse("net-libvirt.xml");
        assertSharedMemfdMemory(d);
        Element nic = (Element) d.getElementsByTagName("interface").item(0);
        assertEquals("vhostuser", nic.getAttribute("type"));
        assertEquals("virtio", ((Element) nic.getElementsByTagName("model").item(0)).getAttribute("type"));
        Element source = (Element) nic.getElementsByTagName("source").item(0);
        String mac = ((Element) nic.getElementsByTagName("mac").item(0)).getAttribute("address");
        List<String> args = QemuConfigs.deviceArgs("net-qemu.sh", source.getAttribute("path"), mac, "1");
        assertTrue(args.stream().anyMatch(a -> a.startsWith("virtio-net-pci,") && a.contains("mac=" + mac)), args.toString());
    }

    @Test
    void shouldAttachTheRngDeviceOnSharedMemory() throws Exception {
        Document d = parse("rng-libvirt.xml");
        assertSharedMemfdMemory(d);
        var args = d.getElementsByTagName("qemu:arg");
        boolean device = false;
        for (int i = 0; i < args.getLength(); i++) {
            device |= ((Element) args.item(i)).getAttribute("value").startsWith("vhost-user-rng-pci,");
        }
        assertTrue(device, "passes a vhost-user-rng-pci device to QEMU");
    }

    // ---- packed virtqueues: the same devices with <driver packed='on'/>, as PACKED=on scripts ----

    @Test
    void shouldDescribeTheVhostUserDiskOnPackedVirtqueues() throws Exception {
        Document d = parse("blk-libvirt-packed.xml");
        assertSharedMemfdMemory(d);
        Element disk = (Element) d.getElementsByTagName("disk").item(0);
        assertEquals("vhostuser", disk.getAttribute("type"));
        Element driver = (Element) disk.getElementsByTagName("driver").item(0);
        assertEquals("2", driver.getAttribute("queues"));
        assertEquals("on", driver.getAttribute("packed"));
        Element source = (Element) disk.getElementsByTagName("source").item(0);
        assertTrue(QemuConfigs.deviceArgs(true, "blk-qemu.sh", source.getAttribute("path"), "2")
                .contains("vhost-user-blk-pci,chardev=jvhost-blk0,num-queues=2,packed=on"), "the same disk as PACKED=on blk-qemu.sh");
    }

    @Test
    void shouldDescribeTheVhostUserNicOnPackedVirtqueues() throws Exception {
        Document d = parse("net-libvirt-packed.xml");
        assertSharedMemfdMemory(d);
        Element nic = (Element) d.getElementsByTagName("interface").item(0);
        assertEquals("vhostuser", nic.getAttribute("type"));
        assertEquals("on", ((Element) nic.getElementsByTagName("driver").item(0)).getAttribute("packed"));
        Element source = (Element) nic.getElementsByTagName("source").item(0);
        String mac = ((Element) nic.getElementsByTagName("mac").item(0)).getAttribute("address");
        List<String> args = QemuConfigs.deviceArgs(true, "net-qemu.sh", source.getAttribute("path"), mac, "1");
        assertTrue(args.stream().anyMatch(a -> a.startsWith("virtio-net-pci,") && a.contains("mac=" + mac)
                && a.endsWith(",packed=on")), args.toString());
    }

    @Test
    void shouldAttachTheRngDeviceOnAPackedVirtqueue() throws Exception {
        Document d = parse("rng-libvirt-packed.xml");
        assertSharedMemfdMemory(d);
        var args = d.getElementsByTagName("qemu:arg");
        String device = "";
        for (int i = 0; i < args.getLength(); i++) {
            String value = ((Element) args.item(i)).getAttribute("value");
            device = value.startsWith("vhost-user-rng-pci,") ? value : device;
        }
        assertTrue(QemuConfigs.deviceArgs(true, "rng-qemu.sh", "/var/run/jvhost/rng.sock").contains(device),
                "the same device as PACKED=on rng-qemu.sh: " + device);
    }
}
