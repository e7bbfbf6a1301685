package io.jvhost.perf;

import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.DatagramChannel;

/**
 * Sends one VXLAN datagram over and over for a while, then prints how many it sent and the CPU
 * time its thread used: the load of {@link VxlanBench}'s decapsulation rows, run as its own process
 * (in a network namespace of the bench's). The kernel's receive side of a veth runs in the sender's
 * context, so that CPU time includes it.
 *
 * <pre>UdpBlaster SRC_IP DST_IP DST_PORT VNI FRAME_BYTES SECONDS</pre>
 */
public final class UdpBlaster {
    private UdpBlaster() {
    }

    public static void main(String[] args) throws Exception {
        InetAddress src = InetAddress.getByName(args[0]);
        InetSocketAddress dst = new InetSocketAddress(InetAddress.getByName(args[1]), Integer.parseInt(args[2]));
        int vni = Integer.parseInt(args[3]), frame = Integer.parseInt(args[4]);
        long nanos = (long) (Double.parseDouble(args[5]) * 1e9);
        ByteBuffer datagram = ByteBuffer.allocateDirect(8 + frame);
        datagram.put(0, (byte) 0x08).putInt(4, vni << 8);
        // Inner frame: to a MAC nobody has (it floods), from a fixed one, the local experimental ethertype
        // 0x88B5 (no IP header for a bridge netfilter to reject), zeros.
        datagram.put(8, new byte[] {0x52, 0x54, 0, 0x0b, 0x0b, 0x0b, 0x52, 0x54, 0, 0x0a, 0x0a, 0x0a, (byte) 0x88, (byte) 0xB5});
        try (DatagramChannel ch = DatagramChannel.open()) {
            ch.bind(new InetSocketAddress(src, 0));
            ch.connect(dst);
            long sent = 0, errors = 0, cpu0 = ManagementFactory.getThreadMXBean().getCurrentThreadCpuTime();
            long end = System.nanoTime() + nanos;
            while (System.nanoTime() < end) {
                for (int i = 0; i < 64; i++) {
                    datagram.clear();
                    try {
                        ch.write(datagram);
                        sent++;
                    } catch (java.io.IOException e) {
                        errors++; // ICMP unreachable reported back on a connected socket, or a full queue
                    }
                }
            }
            long cpu = ManagementFactory.getThreadMXBean().getCurrentThreadCpuTime() - cpu0;
            System.out.println("sent " + sent + " errors " + errors + " cpu_ns " + cpu);
        }
    }
}
