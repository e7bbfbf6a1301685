package io.jvhost.cli.net;

import io.jvhost.cli.DeviceCommand;
import io.jvhost.net.BenchPorts;
import io.jvhost.net.Frames;
import io.jvhost.net.L2Switch;
import io.jvhost.net.NetDevice;
import io.jvhost.net.NetPort;
import io.jvhost.net.TapPort;

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
    @ArgGroup(exclusive = true, multiplicity = "1")
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

    @Option(names = "--mtu", defaultValue = "1500", description = "MTU (default ${DEFAULT-VALUE}).")
    int mtu;

    private NetPort tap(String name, int socketIndex) {
        try {
            return new TapPort(socketIndex == 0 ? name : name + socketIndex, queues);
        } catch (io.jvhost.core.sys.NativeException e) {
            throw new IllegalStateException("cannot open TAP " + name + ": " + e.getMessage(), e);
        }
    }

    @Override
    public Integer call() throws Exception {
        L2Switch sw = mode.switched ? new L2Switch() : null;
        List<NetDevice> devices = new ArrayList<>();
        return serve.serve("net", i -> {
            NetPort port = mode.tap != null ? tap(mode.tap, i)
                    : sw != null ? sw.newPort()
                    : mode.drop ? new BenchPorts.Drop()
                    : mode.reflect ? new BenchPorts.Reflect()
                    : new BenchPorts.Generate(mode.generate);
            NetDevice d = new NetDevice(port, queues, Frames.parseMac(mac) + i, mtu);
            devices.add(d);
            return d;
        }, () -> devices.forEach(d -> System.out.println(d.port().describe())));
    }
}
