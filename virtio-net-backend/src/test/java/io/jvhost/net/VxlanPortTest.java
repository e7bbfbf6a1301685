package io.jvhost.net;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketTimeoutException;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.net.NetRig.GUEST_MAC;
import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A simulated guest on an {@link L2Switch} with a {@link VxlanPort} whose remotes are plain UDP
 * sockets of the test, all on loopback (127.0.0.1 the port, 127.0.0.2 and .3 the remotes).
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class VxlanPortTest {
    private static final int VNI = 42;
    private static final long MAC_A = GUEST_MAC, MAC_X = 0x02_00_00_00_00_0AL, MAC_Y = 0x02_00_00_00_00_0BL;
    private static final InetAddress LOCAL = InetAddress.ofLiteral("127.0.0.1");

    private final AtomicLong now = new AtomicLong(1_000);
    private final L2Switch sw = new L2Switch();
    private DatagramSocket peer1, peer2;
    private VxlanPort port;
    private NetRig guest;

    @AfterEach
    void close() throws Exception {
        if (guest != null) {
            guest.close();
        }
        if (port != null) {
            port.close();
        }
        for (DatagramSocket s : new DatagramSocket[] {peer1, peer2}) {
            if (s != null) {
                s.close();
            }
        }
    }

    private void open() throws Exception {
        peer1 = new DatagramSocket(new InetSocketAddress("127.0.0.2", 0));
        peer2 = new DatagramSocket(new InetSocketAddress("127.0.0.3", 0));
        peer1.setSoTimeout(5_000);
        peer2.setSoTimeout(5_000);
        port = VxlanPort.open(sw, new VxlanPort.Config(VNI, List.of((InetSocketAddress) peer1.getLocalSocketAddress(),
                (InetSocketAddress) peer2.getLocalSocketAddress()), LOCAL, 0, true, 1518), now::get);
        guest = NetRig.serve(sw.newPort(), 1, MAC_A, 1500).start(MODERN);
        guest.postRx(0, 16, 2048);
    }

    private static byte[] receive(DatagramSocket s) throws IOException {
        DatagramPacket p = new DatagramPacket(new byte[65536], 65536);
        s.receive(p);
        return Arrays.copyOf(p.getData(), p.getLength());
    }

    private static void assertNothing(DatagramSocket s) throws IOException {
        s.setSoTimeout(300);
        try {
            byte[] got = receive(s);
            throw new AssertionError("unexpected datagram of " + got.length + " B");
        } catch (SocketTimeoutException expected) {
            // nothing came
        } finally {
            s.setSoTimeout(5_000);
        }
    }

    private static byte[] vxlan(int flags, int vni, byte[] frame) {
        byte[] p = new byte[8 + frame.length];
        p[0] = (byte) flags;
        p[4] = (byte) (vni >>> 16);
        p[5] = (byte) (vni >>> 8);
        p[6] = (byte) vni;
        System.arraycopy(frame, 0, p, 8, frame.length);
        return p;
    }

    private void sendToPort(DatagramSocket from, byte[] payload) throws IOException {
        from.send(new DatagramPacket(payload, payload.length, new InetSocketAddress(LOCAL, port.localPort())));
    }

    private static byte[] header(int vni) {
        return new byte[] {0x08, 0, 0, 0, (byte) (vni >>> 16), (byte) (vni >>> 8), (byte) vni, 0};
    }

    @Test
    void shouldFloodAGuestBroadcastToEveryRemoteWithTheVniAndAFlowHashedSourcePort() throws Exception {
        open();
        byte[] hello = frame(Frames.BROADCAST, MAC_A, 342, 1);

        guest.transmit(0, hello);

        for (DatagramSocket peer : new DatagramSocket[] {peer1, peer2}) {
            DatagramPacket p = new DatagramPacket(new byte[2048], 2048);
            peer.receive(p);
            byte[] got = Arrays.copyOf(p.getData(), p.getLength());
            assertArrayEquals(header(VNI), Arrays.copyOf(got, 8));
            assertArrayEquals(hello, Arrays.copyOfRange(got, 8, got.length));
            assertEquals(LOCAL, p.getAddress());
            int source = p.getPort();
            assertTrue(Arrays.stream(port.sourcePorts()).anyMatch(s -> s == source), "source port " + source);
            assertTrue(source >= 1024 && source != port.localPort(), "an ephemeral port, not the VXLAN port: " + source);
        }
        assertEquals(1, port.counter(VxlanPort.TX_FRAMES));
        assertEquals(2, port.counter(VxlanPort.TX_DATAGRAMS));
    }

    @Test
    void shouldDecapsulateIntoTheGuestLearnTheSenderAndSendTheReplyToThatRemoteOnly() throws Exception {
        open();
        byte[] request = frame(MAC_A, MAC_X, 1000, 2);

        sendToPort(peer2, vxlan(0x08, VNI, request));

        assertArrayEquals(request, guest.awaitFrame(0).frame());
        assertEquals(1, port.remoteOf(MAC_X), "MAC_X is behind remote 1 (peer2)");
        assertEquals(port.switchPort().id(), sw.lookup(MAC_X), "and behind the VXLAN port for the switch");

        byte[] reply = frame(MAC_X, MAC_A, 1514, 3);
        guest.transmit(0, reply);
        byte[] got = receive(peer2);
        assertArrayEquals(reply, Arrays.copyOfRange(got, 8, got.length));
        assertNothing(peer1);

        now.addAndGet(300_001); // aged out: the next frame to MAC_X floods again
        guest.transmit(0, reply);
        assertEquals(8 + reply.length, receive(peer1).length);
        assertEquals(8 + reply.length, receive(peer2).length);
    }

    @Test
    void shouldCountAndDropHostilePacketsAndStillServeTheGoodOne() throws Exception {
        open();
        byte[] ok = frame(MAC_A, MAC_Y, 100, 4);
        sendToPort(peer1, vxlan(0x08, VNI + 1, ok));                 // wrong VNI
        sendToPort(peer1, new byte[] {0x08, 0, 0});                   // truncated header
        sendToPort(peer1, new byte[0]);                               // empty datagram
        sendToPort(peer1, vxlan(0x00, VNI, ok));                      // no I flag
        sendToPort(peer1, vxlan(0x08, VNI, new byte[13]));            // inner frame shorter than Ethernet
        sendToPort(peer1, vxlan(0x08, VNI, new byte[1519]));          // longer than the MTU allows
        sendToPort(peer1, vxlan(0x08, VNI, new byte[9000]));          // much longer
        try (DatagramSocket stranger = new DatagramSocket(new InetSocketAddress("127.0.0.4", 0))) {
            sendToPort(stranger, vxlan(0x08, VNI, ok));                // not a configured remote
        }
        sendToPort(peer1, vxlan(0xFF, VNI | 0, ok));                  // good, reserved flags set

        assertArrayEquals(ok, guest.awaitFrame(0).frame());
        long truncated = port.counter(VxlanPort.RX_TRUNCATED);
        assertTrue(truncated == 1 || truncated == 2, "the 3-byte header, and the empty datagram unless Netty skips it: " + truncated);
        assertEquals(8 + truncated - 1, port.counter(VxlanPort.RX_DATAGRAMS), "the event loop saw them all before the good one");
        assertEquals(1, port.counter(VxlanPort.RX_WRONG_VNI));
        assertEquals(1, port.counter(VxlanPort.RX_NO_I_FLAG));
        assertEquals(1, port.counter(VxlanPort.RX_FRAME_TOO_SHORT));
        assertEquals(2, port.counter(VxlanPort.RX_FRAME_TOO_LONG));
        assertEquals(1, port.counter(VxlanPort.RX_UNKNOWN_SENDER));
        assertEquals(1, port.counter(VxlanPort.RX_FRAMES));
        assertEquals(0, port.remoteOf(MAC_Y));
        guest.assertNothingMoreUsed(0);
        assertTrue(port.describe().contains("rx wrong VNI 1"), port.describe());
    }

    @Test
    void shouldRefuseAConfigMixingFamiliesOrWithoutRemotes() {
        var v4 = new InetSocketAddress("127.0.0.2", 4789);
        var v6 = new InetSocketAddress("::1", 4789);
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> new VxlanPort.Config(1, List.of(v4, v6), null, 4789, true, 1518));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> new VxlanPort.Config(1, List.of(), null, 4789, true, 1518));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
                () -> new VxlanPort.Config(1 << 24, List.of(v4), null, 4789, true, 1518));
    }

    @Test
    void shouldCarryFramesOverAnIpv6Underlay() throws Exception {
        try (DatagramSocket peer = new DatagramSocket(new InetSocketAddress("::1", 0))) {
            peer.setSoTimeout(5_000);
            port = VxlanPort.open(sw, new VxlanPort.Config(VNI, List.of((InetSocketAddress) peer.getLocalSocketAddress()),
                    InetAddress.ofLiteral("::1"), 0, true, 1518), now::get);
            guest = NetRig.serve(sw.newPort(), 1, MAC_A, 1500).start(MODERN);
            guest.postRx(0, 4, 2048);
            byte[] out = frame(MAC_X, MAC_A, 200, 5);
            guest.transmit(0, out);
            byte[] got = receive(peer);
            assertArrayEquals(out, Arrays.copyOfRange(got, 8, got.length));

            byte[] in = frame(MAC_A, MAC_X, 300, 6);
            byte[] p = vxlan(0x08, VNI, in);
            peer.send(new DatagramPacket(p, p.length, new InetSocketAddress("::1", port.localPort())));
            assertArrayEquals(in, guest.awaitFrame(0).frame());
        }
    }

    /** Bytes the thread allocated so far (com.sun.management by reflection: this module does not read it). */
    private static long allocated(long threadId) throws ReflectiveOperationException {
        Object bean = Class.forName("java.lang.management.ManagementFactory").getMethod("getThreadMXBean").invoke(null);
        return ((long[]) Class.forName("com.sun.management.ThreadMXBean").getMethod("getThreadAllocatedBytes", long[].class)
                .invoke(bean, (Object) new long[] {threadId}))[0];
    }

    /**
     * Not a pass/fail bound on Netty: a measurement, printed. Our own send path (what a guest's
     * poller runs) allocates nothing; Netty's datagram channel allocates on its event loop per
     * datagram (see VxlanPort's class comment).
     */
    @Test
    void shouldMeasureWhatNettyAllocatesPerDatagram() throws Exception {
        open();
        long loopThread = Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals("jvhost-vxlan"))
                .findFirst().orElseThrow().threadId();
        MemorySegment frame = MemorySegment.ofArray(frame(MAC_Y, MAC_A, 64, 7)); // MAC_Y unknown: floods to both
        MemorySegment nativeFrame = java.lang.foreign.Arena.ofAuto().allocate(64);
        nativeFrame.copyFrom(frame);
        int n = 20_000;
        for (int i = 0; i < n; i++) { // warm up
            port.send(MAC_A, nativeFrame, 0, 64);
            if (i % 256 == 0) {
                Thread.sleep(1);
            }
        }
        Thread.sleep(200);
        long mine = allocated(Thread.currentThread().threadId()), loop = allocated(loopThread);
        long sentBefore = port.counter(VxlanPort.TX_DATAGRAMS);
        for (int i = 0; i < n; i++) {
            port.send(MAC_A, nativeFrame, 0, 64);
            if (i % 256 == 0) {
                java.util.concurrent.locks.LockSupport.parkNanos(1_000_000); // let the loop keep up (pools hold 512 a remote); Thread.sleep allocates
            }
        }
        Thread.sleep(200);
        long sendSide = allocated(Thread.currentThread().threadId()) - mine;
        long sent = port.counter(VxlanPort.TX_DATAGRAMS) - sentBefore;
        long loopPerSent = (allocated(loopThread) - loop) / Math.max(1, sent);

        byte[] good = vxlan(0x08, VNI, frame(MAC_A, MAC_X, 64, 8));
        DatagramPacket dp = new DatagramPacket(good, good.length, new InetSocketAddress(LOCAL, port.localPort()));
        long rxBefore = port.counter(VxlanPort.RX_DATAGRAMS);
        loop = allocated(loopThread);
        for (int i = 0; i < 5_000; i++) {
            peer1.send(dp);
        }
        Thread.sleep(300);
        long received = port.counter(VxlanPort.RX_DATAGRAMS) - rxBefore;
        long loopPerReceived = (allocated(loopThread) - loop) / Math.max(1, received);
        System.out.printf("VXLAN allocation: poller side %d B for %d frames; event loop %d B per datagram sent (%d sent),"
                + " %d B per datagram received (%d received; the guest's pool drops what it cannot hold)%n",
                sendSide, n, loopPerSent, sent, loopPerReceived, received);
        // Not one object per frame: what shows (a few KiB per 20,000) is the amortized growth of
        // Netty's task queue in chunks, and it varies with how the loop keeps up.
        assertTrue(sendSide < n, "the poller's send path allocates under 1 B per frame: " + sendSide + " B for " + n);
    }
}
