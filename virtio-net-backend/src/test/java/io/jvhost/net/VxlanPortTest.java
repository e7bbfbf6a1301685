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
        assertEquals(2, port.counter(VxlanPort.RX_TRUNCATED), "the 3-byte header and the empty datagram");
        assertEquals(9, port.counter(VxlanPort.RX_DATAGRAMS), "the port's thread saw them all before the good one");
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

    @Test
    void shouldFreeItsUdpPortAndStopItsThreadWhenClosed() throws Exception {
        open();
        int udp = port.localPort();
        port.close();
        port = null;

        assertTrue(Thread.getAllStackTraces().keySet().stream().noneMatch(t -> t.getName().equals("jvhost-vxlan")),
                "the receiving thread ended");
        try (DatagramSocket again = new DatagramSocket(new InetSocketAddress(LOCAL, udp))) {
            assertEquals(udp, again.getLocalPort(), "the port is free again");
        }
    }

    @Test
    void shouldRefuseAPortInUseWithTheAddressAndTheReason() throws Exception {
        try (DatagramSocket taken = new DatagramSocket(new InetSocketAddress(LOCAL, 0))) {
            var config = new VxlanPort.Config(VNI, List.of(new InetSocketAddress("127.0.0.2", 4789)), LOCAL,
                    taken.getLocalPort(), true, 1518);
            IllegalStateException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalStateException.class,
                    () -> VxlanPort.open(sw, config));
            assertTrue(e.getMessage().contains("127.0.0.1:" + taken.getLocalPort()) && e.getMessage().contains("EADDRINUSE"),
                    e.getMessage());
        }
    }

    /** Bytes {@code thread} allocated so far (com.sun.management by reflection: this module does not read it). */
    private static long allocated(Thread thread) throws ReflectiveOperationException {
        Object bean = Class.forName("java.lang.management.ManagementFactory").getMethod("getThreadMXBean").invoke(null);
        return ((long[]) Class.forName("com.sun.management.ThreadMXBean").getMethod("getThreadAllocatedBytes", long[].class)
                .invoke(bean, (Object) new long[] {thread.threadId()}))[0];
    }

    private static final int WARM_UP_ROUNDS = 3, WINDOWS = 3, FRAMES = 20_000;

    /**
     * Measured windows, each after the warm-up: one of them must show 0 B (as in perf's
     * SteadyStateAllocationTest: a late deoptimization may rebuild scalar-replaced objects once,
     * never per frame). Allocation in every window is per frame.
     */
    private static void assertOneWindowAllocatedNothing(String what, long[] bytes) {
        for (long b : bytes) {
            if (b == 0) {
                return;
            }
        }
        throw new AssertionError(what + ": allocation in every window of " + FRAMES + " frames, so per frame: "
                + Arrays.toString(bytes) + " B");
    }

    /**
     * Both directions allocate nothing per frame after a warm-up, counted by ThreadMXBean on the
     * threads doing the work: sending, a thread of the test's that calls {@code send} as a guest's
     * poller does (floods: one sendmmsg to both remotes); receiving, the port's own thread
     * (recvmmsg, checks, learning, the switch's injection into the guest). The test's thread only
     * reads the counters and, for receiving, sends the datagrams.
     */
    @Test
    void shouldAllocateNothingPerFrameSentOrReceivedAfterWarmUp() throws Exception {
        open();
        MemorySegment frame = java.lang.foreign.Arena.ofAuto().allocate(64);
        frame.copyFrom(MemorySegment.ofArray(frame(MAC_Y, MAC_A, 64, 7))); // MAC_Y unknown: floods to both
        java.util.concurrent.atomic.AtomicInteger go = new java.util.concurrent.atomic.AtomicInteger(),
                done = new java.util.concurrent.atomic.AtomicInteger();
        Thread poller = Thread.ofPlatform().name("vxlan-test-poller").daemon(true).start(() -> {
            for (int round = 1; round <= WARM_UP_ROUNDS + WINDOWS + 1; round++) {
                while (go.get() < round) {
                    Thread.onSpinWait(); // waits without allocating, so the window holds the sends alone
                }
                if (round > WARM_UP_ROUNDS + WINDOWS) {
                    return;
                }
                for (int i = 0; i < FRAMES; i++) {
                    port.send(MAC_A, frame, 0, 64);
                }
                done.set(round);
            }
        });
        long[] sendBytes = new long[WINDOWS];
        long sentBefore = port.counter(VxlanPort.TX_DATAGRAMS);
        for (int round = 1; round <= WARM_UP_ROUNDS + WINDOWS; round++) {
            long before = allocated(poller);
            go.set(round);
            while (done.get() < round) {
                Thread.sleep(1);
            }
            if (round > WARM_UP_ROUNDS) {
                sendBytes[round - WARM_UP_ROUNDS - 1] = allocated(poller) - before;
            }
        }
        go.set(WARM_UP_ROUNDS + WINDOWS + 1);
        poller.join();
        long sent = port.counter(VxlanPort.TX_DATAGRAMS) - sentBefore;

        Thread rxThread = Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().equals("jvhost-vxlan"))
                .findFirst().orElseThrow();
        byte[] good = vxlan(0x08, VNI, frame(MAC_A, MAC_X, 64, 8));
        DatagramPacket dp = new DatagramPacket(good, good.length, new InetSocketAddress(LOCAL, port.localPort()));
        long[] receiveBytes = new long[WINDOWS];
        long[] received = new long[WINDOWS];
        for (int round = 1; round <= WARM_UP_ROUNDS + WINDOWS; round++) {
            long before = allocated(rxThread), framesBefore = port.counter(VxlanPort.RX_FRAMES);
            for (int i = 0; i < FRAMES; i++) {
                peer1.send(dp);
            }
            for (long seen = -1; seen != port.counter(VxlanPort.RX_DATAGRAMS); ) { // until the port's thread is idle
                seen = port.counter(VxlanPort.RX_DATAGRAMS);
                Thread.sleep(50);
            }
            if (round > WARM_UP_ROUNDS) {
                receiveBytes[round - WARM_UP_ROUNDS - 1] = allocated(rxThread) - before;
                received[round - WARM_UP_ROUNDS - 1] = port.counter(VxlanPort.RX_FRAMES) - framesBefore;
            }
        }
        System.out.printf("VXLAN allocation per window of %d frames: sending %s B (%d datagrams in all), receiving %s B"
                + " (frames decapsulated %s; the socket drops what the thread cannot take, the guest's pool what it cannot hold)%n",
                FRAMES, Arrays.toString(sendBytes), sent, Arrays.toString(receiveBytes), Arrays.toString(received));
        assertTrue(sent >= (long) WINDOWS * FRAMES, "datagrams sent: " + sent);
        assertTrue(Arrays.stream(received).allMatch(r -> r >= FRAMES / 4), "frames received: " + Arrays.toString(received));
        assertOneWindowAllocatedNothing("sending", sendBytes);
        assertOneWindowAllocatedNothing("receiving", receiveBytes);
    }
}
