package io.jvhost.cli.net;

import io.jvhost.cli.Failure;
import io.jvhost.net.L2Switch;
import io.jvhost.net.Vxlan;
import io.jvhost.net.VxlanPort;

import java.io.IOException;
import java.net.Inet6Address;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.NetworkInterface;
import java.nio.channels.DatagramChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

import picocli.CommandLine.ParameterException;

/** {@code jvhost net --vxlan-*}: the options checked, the underlay's MTU found, the guest's MTU chosen. */
final class VxlanOptions {
    private VxlanOptions() {}

    /** The port to open and the MTU the guests get. */
    record Plan(VxlanPort.Config config, int mtu) {}

    static Plan plan(Function<String, ParameterException> usage, List<String> remoteTexts, Integer vni, String localText,
                     int port, boolean checksum, Integer askedMtu) {
        if (vni == null) {
            throw usage.apply("--vxlan-remote needs --vxlan-vni N (0.." + Vxlan.MAX_VNI + "), the same as the remotes'");
        }
        if (vni < 0 || vni > Vxlan.MAX_VNI) {
            throw usage.apply("--vxlan-vni must be 0.." + Vxlan.MAX_VNI + ", got " + vni);
        }
        if (port < 1 || port > 65535) {
            throw usage.apply("--vxlan-port must be 1..65535, got " + port);
        }
        List<InetSocketAddress> remotes = new ArrayList<>();
        for (String text : remoteTexts) {
            InetSocketAddress r = new InetSocketAddress(address(usage, "--vxlan-remote", text), port);
            if (remotes.contains(r)) {
                throw usage.apply("--vxlan-remote " + text + " is given twice");
            }
            remotes.add(r);
        }
        InetAddress local = localText == null ? null : address(usage, "--vxlan-local", localText);
        boolean v6 = remotes.get(0).getAddress() instanceof Inet6Address;
        for (InetSocketAddress r : remotes) {
            if ((r.getAddress() instanceof Inet6Address) != v6) {
                throw usage.apply("--vxlan-remote: mix of IPv4 and IPv6 remotes; one port speaks one family");
            }
        }
        if (local != null && (local instanceof Inet6Address) != v6) {
            throw usage.apply("--vxlan-local " + localText + " is not of the remotes' family (" + (v6 ? "IPv6" : "IPv4") + ")");
        }
        int overhead = Vxlan.overhead(v6);
        Underlay underlay = underlay(local, remotes);
        int fits = underlay.mtu - overhead;
        if (askedMtu != null && askedMtu > fits) {
            throw usage.apply("--mtu " + askedMtu + " does not fit the VXLAN underlay: " + underlay.mtu + " B MTU on "
                    + underlay.name + " less " + overhead + " B of outer " + (v6 ? "IPv6" : "IPv4")
                    + ", UDP, VXLAN and inner Ethernet headers leaves at most " + fits);
        }
        if (fits < 68) {
            throw new Failure("VXLAN underlay MTU " + underlay.mtu + " on " + underlay.name + " is too small: a guest needs 68 + "
                    + overhead + " B");
        }
        // Unasked, the guests keep the usual 1500 when the underlay carries it (a 9000-byte underlay
        // does not make jumbo guests), else they get what fits, as Linux's vxlan sets its own MTU.
        int mtu = askedMtu != null ? askedMtu : Math.min(1500, fits);
        return new Plan(new VxlanPort.Config(vni, remotes, local, port, checksum, mtu + 14 + 4), mtu);
    }

    static VxlanPort open(L2Switch sw, VxlanPort.Config config, io.jvhost.core.sys.Fd inherited) {
        try {
            return VxlanPort.open(sw, config, inherited);
        } catch (IllegalStateException e) {
            throw new Failure(e.getMessage(), e);
        }
    }

    /** A numeric address; no name lookups (a VTEP is an address, and DNS here would be a surprise). */
    private static InetAddress address(Function<String, ParameterException> usage, String option, String text) {
        try {
            return InetAddress.ofLiteral(text.startsWith("[") && text.endsWith("]") ? text.substring(1, text.length() - 1) : text);
        } catch (IllegalArgumentException e) {
            throw usage.apply(option + " " + text + " is not an IPv4 or IPv6 address");
        }
    }

    private record Underlay(String name, int mtu) {}

    /**
     * The smallest MTU of the interfaces towards the remotes (the local address's interface when
     * given): the route the kernel picks for a UDP socket connected to each (no packet is sent).
     */
    private static Underlay underlay(InetAddress local, List<InetSocketAddress> remotes) {
        Underlay smallest = null;
        for (InetSocketAddress r : remotes) {
            InetAddress source = local;
            if (source == null) {
                try (DatagramChannel c = DatagramChannel.open()) {
                    c.connect(r);
                    source = ((InetSocketAddress) c.getLocalAddress()).getAddress();
                } catch (IOException e) {
                    throw new Failure("--vxlan-remote " + r.getAddress().getHostAddress() + ": no route to it (" + e.getMessage() + ")", e);
                }
            }
            try {
                NetworkInterface nic = NetworkInterface.getByInetAddress(source);
                if (nic == null) {
                    throw new Failure("--vxlan-local " + source.getHostAddress() + " is not an address of this host");
                }
                if (smallest == null || nic.getMTU() < smallest.mtu) {
                    smallest = new Underlay(nic.getName(), nic.getMTU());
                }
            } catch (IOException e) {
                throw new Failure("VXLAN underlay: cannot read the MTU of " + source.getHostAddress() + "'s interface: " + e.getMessage(), e);
            }
        }
        return smallest;
    }
}
