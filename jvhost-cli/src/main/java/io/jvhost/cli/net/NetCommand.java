package io.jvhost.cli.net;

import io.jvhost.cli.DeviceCommand;
import io.jvhost.cli.DeviceSet;
import io.jvhost.cli.Failure;
import io.jvhost.net.BenchPorts;
import io.jvhost.net.Frames;
import io.jvhost.net.L2Switch;
import io.jvhost.net.NetDevice;
import io.jvhost.net.NetPort;
import io.jvhost.net.TapPort;
import io.jvhost.net.VxlanPort;

import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.sys.LibC;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code jvhost net}: vhost-user NICs connected to a switch, a bench port, or nothing else yet. */
@Command(name = "net", mixinStandardHelpOptions = true,
        description = {"Serve virtio-net over vhost-user. Each --socket is one guest NIC (with --tap, NAME, NAME1, NAME2, ...).", "",
            "QEMU: -chardev socket,id=n0,path=PATH -netdev vhost-user,id=net0,chardev=n0,queues=N",
            "      -device virtio-net-pci,netdev=net0,mq=on,vectors=0   (vectors=0: QEMU 7.2 under TCG, see README)",
            "DPDK: dpdk-testpmd --no-pci --single-file-segments --vdev net_virtio_user0,path=PATH,queues=N ..."})
public final class NetCommand extends DeviceCommand {
    /** Required, except that --vxlan-remote implies --switch. */
    @ArgGroup(exclusive = true, multiplicity = "0..1")
    Mode mode;

    static final class Mode {
        @Option(names = "--tap", paramLabel = "NAME", description = "Connect the NIC to TAP interface NAME (created if missing; needs CAP_NET_ADMIN).")
        String tap;

        @Option(names = "--switch", description = "Connect all sockets' NICs to one in-process learning switch.")
        boolean switched;

        @Option(names = "--drop", description = "Count and discard what the guest sends (bench port).")
        boolean drop;

        @Option(names = "--reflect", description = "Send each guest frame back with MACs swapped (bench port).")
        boolean reflect;

        @Option(names = "--generate", paramLabel = "SIZE", description = "Send SIZE-byte frames to the guest as fast as it takes them (bench port).")
        Integer generate;
    }

    @Option(names = "--queues", defaultValue = "1", description = "Queue pairs per NIC (default ${DEFAULT-VALUE}).")
    int queues;

    @Option(names = "--mac", defaultValue = "52:54:00:12:34:56", description = "The guest's MAC (default ${DEFAULT-VALUE}).")
    String mac;

    @Option(names = "--mtu", description = "MTU (default 1500; with --vxlan-remote, the underlay's MTU less the VXLAN overhead: 50 B over IPv4, 70 B over IPv6).")
    Integer mtu;

    @Option(names = "--vxlan-remote", paramLabel = "IP", description = "Give the switch (implied) a VXLAN uplink (RFC 7348) to this VTEP;"
            + " repeat for more remotes (frames to unknown and broadcast MACs go to each).")
    List<String> vxlanRemotes = new ArrayList<>();

    @Option(names = "--vxlan-vni", paramLabel = "N", description = "The VXLAN network identifier, 0..16777215 (required with --vxlan-remote).")
    Integer vxlanVni;

    @Option(names = "--vxlan-local", paramLabel = "IP", description = "Local address to listen and send from (default: any, the route picks).")
    String vxlanLocal;

    @Option(names = "--vxlan-port", defaultValue = "4789", paramLabel = "PORT", description = "UDP port to listen on and send to (default ${DEFAULT-VALUE}).")
    int vxlanPort;

    @Option(names = "--vxlan-no-checksum", description = "Send outer UDP checksums of 0 (over IPv6 the remote must accept them: Linux's udp6zerocsumrx).")
    boolean vxlanNoChecksum;

    @Option(names = "--no-offload", description = {"Offer the guest no checksum or TCP segmentation offloads:"
            + " every frame crosses as a complete, MTU-sized frame (slower; for ports or peers that mishandle offloads)."})
    boolean noOffload;

    /** Linux interface names are at most 15 bytes (IFNAMSIZ less the NUL). */
    static final int MAX_TAP_NAME = 15;

    private static String tapName(String name, int socketIndex) {
        return socketIndex == 0 ? name : name + socketIndex;
    }

    private NetPort tap(String name, int socketIndex) {
        String tap = tapName(name, socketIndex);
        try {
            java.util.List<io.jvhost.core.sys.Fd> inherited = predecessor == null ? java.util.List.of()
                    : predecessor.deviceFds("tap:" + tap);
            if (!inherited.isEmpty()) { // live upgrade: the predecessor's queues, the same open TAP
                if (inherited.size() != queues) {
                    inherited.forEach(io.jvhost.core.sys.Fd::close);
                    throw new Failure("--tap " + tap + ": the running process has " + inherited.size() + " queues on it, this command "
                            + queues + " (give the same --queues)");
                }
                return new TapPort(io.jvhost.core.sys.TapInterface.adopt(tap, inherited, true), queues);
            }
            return new TapPort(tap, queues);
        } catch (io.jvhost.core.sys.NativeException e) {
            String user = System.getProperty("user.name");
            throw new Failure("--tap " + tap + ": " + switch (e.errno()) {
                case LibC.EPERM, 13 -> "not permitted to create or attach it (needs CAP_NET_ADMIN: run as root, or"
                        + " have root create it for this user first: ip tuntap add " + tap + " mode tap user " + user
                        + (queues > 1 ? " multi_queue" : "") + ")";
                case LibC.ENOENT, 19 -> "/dev/net/tun is missing (load the tun module: modprobe tun)";
                case 16 -> "busy: another process holds it, or it was created "
                        + (queues > 1 ? "without multi_queue (--queues " + queues + " needs it)" : "with multi_queue");
                case LibC.EINVAL -> "the kernel refused it (" + e.getMessage() + "); is " + tap + " an existing interface that is no TAP?";
                default -> e.getMessage();
            }, e);
        }
    }

    /** Refuses option values no NIC can have, before anything opens. */
    @Override
    public void check() {
        checkRange("--queues", queues, 1, MAX_QUEUES, "queue pairs per NIC");
        if (!mac.matches("[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")) {
            throw usage("--mac " + mac + " is not a MAC address: six hex bytes with colons, e.g. 52:54:00:12:34:56");
        }
        if ((Integer.parseInt(mac.substring(0, 2), 16) & 1) != 0) {
            throw usage("--mac " + mac + " is a multicast address; a NIC needs a unicast one (an even first byte, e.g. 52:...)");
        }
        if (mode == null && vxlanRemotes.isEmpty()) {
            throw usage("Missing required argument: one of --tap, --switch, --drop, --reflect, --generate or --vxlan-remote");
        }
        if (!vxlanRemotes.isEmpty() && mode != null && !mode.switched) {
            throw usage("--vxlan-remote connects the in-process switch; it does not combine with --tap, --drop, --reflect or --generate");
        }
        if (vxlanRemotes.isEmpty() && (vxlanVni != null || vxlanLocal != null || vxlanNoChecksum)) {
            throw usage("--vxlan-vni, --vxlan-local and --vxlan-no-checksum go with --vxlan-remote");
        }
        if (mtu != null) {
            checkRange("--mtu", mtu, 68, 65535 - 14 - 4, "bytes of IP packet");
        }
        vxlanPlan(); // its usage errors here too, before anything opens
        if (mode == null) {
            return;
        }
        if (mode.generate != null) {
            checkRange("--generate", mode.generate, 60, 65535, "frame size in bytes");
        }
        if (mode.tap != null) {
            String longest = tapName(mode.tap, serve.socketCount() - 1);
            int bytes = longest.getBytes(StandardCharsets.UTF_8).length;
            if (mode.tap.isEmpty() || bytes > MAX_TAP_NAME || !mode.tap.matches("[A-Za-z0-9_.-]+")) {
                throw usage("--tap " + mode.tap + ": an interface name is 1.." + MAX_TAP_NAME + " letters, digits, '-', '_' or '.'"
                        + (bytes > MAX_TAP_NAME ? " ('" + longest + "' is " + bytes + ")" : ""));
            }
        }
    }

    @Override
    public DeviceSet open(Shared shared) {
        VxlanOptions.Plan vxlan = vxlanPlan();
        int nicMtu = vxlan != null ? vxlan.mtu() : mtu != null ? mtu : NetDevice.DEFAULT_MTU;
        L2Switch sw = vxlan != null || (mode != null && mode.switched) ? shared.l2Switch() : null;
        String vxlanKey = vxlan == null ? null : "vxlan:" + vxlan.config().port();
        List<io.jvhost.core.sys.Fd> inheritedUdp = predecessor == null || vxlan == null ? List.of() : predecessor.deviceFds(vxlanKey);
        VxlanPort uplink = vxlan == null ? null
                : VxlanOptions.open(sw, vxlan.config(), inheritedUdp.isEmpty() ? null : inheritedUdp.get(0));
        if (uplink != null) {
            // QEMU 7.2 tells a vhost-user NIC's guest its MTU only from its own host_mtu property.
            System.out.printf("jvhost net: VXLAN VNI %d on UDP port %d to %d remote(s); guest MTU %d"
                    + " (QEMU: -device virtio-net-pci,...,host_mtu=%d)%n", vxlan.config().vni(), uplink.localPort(),
                    vxlan.config().remotes().size(), nicMtu, nicMtu);
        }
        List<VirtioDevice> devices = new ArrayList<>();
        List<NetDevice> nics = new ArrayList<>();
        try {
            for (int i = 0; i < serve.socketCount(); i++) {
                NetPort port = mode != null && mode.tap != null ? tap(mode.tap, i)
                        : sw != null ? sw.newPort()
                        : mode.drop ? new BenchPorts.Drop()
                        : mode.reflect ? new BenchPorts.Reflect()
                        : new BenchPorts.Generate(mode.generate);
                NetDevice d = new NetDevice(port, queues, Frames.parseMac(mac) + i, nicMtu, !noOffload);
                nics.add(d);
                devices.add(d);
            }
        } catch (RuntimeException e) {
            nics.forEach(d -> d.port().close());
            if (uplink != null) {
                uplink.close();
            }
            throw e;
        }
        handoverFds = () -> { // a successor takes over the same TAP queues (a second open would find them busy)
            java.util.Map<String, java.util.List<io.jvhost.core.sys.Fd>> fds = new java.util.LinkedHashMap<>();
            for (NetDevice d : nics) {
                if (d.port() instanceof TapPort t) {
                    fds.put("tap:" + t.name(), t.tap().duplicateFds());
                }
            }
            if (uplink != null) { // the UDP port stays bound: a second bind would fail while this process lives
                fds.put(vxlanKey, List.of(uplink.duplicateListenerFd()));
            }
            return fds;
        };
        // Closed once the queues stopped: a TAP's fds go, a switch port is unplugged, the uplink closes.
        return new DeviceSet(devices, () -> {
            nics.forEach(d -> d.port().close());
            if (uplink != null) {
                uplink.close();
            }
        }, () -> {
            nics.forEach(d -> System.out.println(d.port().describe()));
            if (uplink != null) {
                System.out.println(uplink.switchPort().describe());
            }
        }, null, uplink == null ? List.of() : List.of(uplink));
    }

    /** The VXLAN uplink the --vxlan-* options describe (checked as a usage error), or null without --vxlan-remote. */
    private VxlanOptions.Plan vxlanPlan() {
        return vxlanRemotes.isEmpty() ? null
                : VxlanOptions.plan(this::usage, vxlanRemotes, vxlanVni, vxlanLocal, vxlanPort, !vxlanNoChecksum, mtu);
    }
}
