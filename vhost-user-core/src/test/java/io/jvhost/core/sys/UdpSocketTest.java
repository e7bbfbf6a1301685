package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The UDP binding against the running kernel, on loopback only: two-piece sends, batched receives, waking a receiver. */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class UdpSocketTest {
    private static final InetAddress LOOPBACK = InetAddress.ofLiteral("127.0.0.1");

    private static MemorySegment bytes(Arena arena, byte... b) {
        MemorySegment s = arena.allocate(Math.max(1, b.length));
        MemorySegment.copy(b, 0, s, ValueLayout.JAVA_BYTE, 0, b.length);
        return s;
    }

    private static byte[] receive(DatagramSocket s) throws Exception {
        DatagramPacket p = new DatagramPacket(new byte[2048], 2048);
        s.receive(p);
        return Arrays.copyOf(p.getData(), p.getLength());
    }

    @Test
    void shouldSendAHeaderAndABodyAsOneDatagramToEveryDestinationInOneCall() throws Exception {
        try (Arena arena = Arena.ofConfined(); UdpSocket socket = UdpSocket.open(new InetSocketAddress(LOOPBACK, 0));
             DatagramSocket a = new DatagramSocket(new InetSocketAddress("127.0.0.2", 0));
             DatagramSocket b = new DatagramSocket(new InetSocketAddress("127.0.0.3", 0))) {
            a.setSoTimeout(5_000);
            b.setSoTimeout(5_000);
            UdpSocket.Address[] to = {UdpSocket.Address.of((InetSocketAddress) a.getLocalSocketAddress()),
                UdpSocket.Address.of((InetSocketAddress) b.getLocalSocketAddress())};
            MemorySegment head = bytes(arena, (byte) 1, (byte) 2);
            MemorySegment body = bytes(arena, (byte) 9, (byte) 3, (byte) 4, (byte) 5, (byte) 9);

            int sent = new UdpSocket.Sender(4).send(socket, to, 0, 2, head, 0, 2, body, 1, 3);

            assertEquals(2, sent);
            for (DatagramSocket s : new DatagramSocket[] {a, b}) {
                DatagramPacket p = new DatagramPacket(new byte[64], 64);
                s.receive(p);
                assertArrayEquals(new byte[] {1, 2, 3, 4, 5}, Arrays.copyOf(p.getData(), p.getLength()));
                assertEquals(socket.localPort(), p.getPort(), "from the socket's own port");
            }
        }
    }

    @Test
    void shouldSendNoMoreThanItsCapacityPerCallAndSayHowManyWent() throws Exception {
        try (Arena arena = Arena.ofConfined(); UdpSocket socket = UdpSocket.open(new InetSocketAddress(LOOPBACK, 0));
             DatagramSocket a = new DatagramSocket(new InetSocketAddress(LOOPBACK, 0))) {
            a.setSoTimeout(5_000);
            UdpSocket.Address to = UdpSocket.Address.of((InetSocketAddress) a.getLocalSocketAddress());
            MemorySegment one = bytes(arena, (byte) 7);

            assertEquals(1, new UdpSocket.Sender(1).send(socket, new UdpSocket.Address[] {to, to, to}, 0, 3, one, 0, 1, one, 0, 1));
            assertArrayEquals(new byte[] {7, 7}, receive(a));
        }
    }

    @Test
    void shouldReceiveABatchWithLengthsSendersAndTruncation() throws Exception {
        try (UdpSocket socket = UdpSocket.open(new InetSocketAddress(LOOPBACK, 0));
             DatagramSocket a = new DatagramSocket(new InetSocketAddress("127.0.0.2", 0));
             DatagramSocket b = new DatagramSocket(new InetSocketAddress("127.0.0.3", 0))) {
            InetSocketAddress port = new InetSocketAddress(LOOPBACK, socket.localPort());
            a.send(new DatagramPacket(new byte[] {1, 2, 3}, 3, port));
            b.send(new DatagramPacket(new byte[0], 0, port));
            a.send(new DatagramPacket(new byte[40], 40, port));
            UdpSocket.Address[] known = {UdpSocket.Address.of(new InetSocketAddress("127.0.0.9", 1)),
                UdpSocket.Address.of(new InetSocketAddress("127.0.0.2", 4789))};
            UdpSocket.Receiver rx = new UdpSocket.Receiver(8, 16);

            int n = 0;
            while (n < 3) { // loopback delivers them at once, but one call may see fewer than all
                int r = rx.receive(socket);
                assertTrue(r > 0, "received " + r);
                for (int i = 0; i < r; i++, n++) {
                    switch (n) {
                        case 0 -> {
                            assertEquals(3, rx.length(i));
                            assertArrayEquals(new byte[] {1, 2, 3}, rx.buffers().asSlice(rx.offset(i), 3).toArray(ValueLayout.JAVA_BYTE));
                            assertEquals(1, rx.senderAmong(i, known), "127.0.0.2, whatever its port");
                            assertFalse(rx.truncated(i));
                        }
                        case 1 -> {
                            assertEquals(0, rx.length(i), "an empty datagram");
                            assertEquals(-1, rx.senderAmong(i, known));
                            assertEquals(InetAddress.ofLiteral("127.0.0.3"), rx.sender(i));
                        }
                        default -> {
                            assertEquals(16, rx.length(i), "cut to the buffer");
                            assertTrue(rx.truncated(i));
                        }
                    }
                }
            }
        }
    }

    @Test
    void shouldWakeAWaitingReceiverWhenItsInputIsShut() throws Exception {
        UdpSocket socket = UdpSocket.open(new InetSocketAddress(LOOPBACK, 0));
        AtomicInteger result = new AtomicInteger(Integer.MIN_VALUE);
        Thread t = Thread.ofPlatform().start(() -> result.set(new UdpSocket.Receiver(4, 64).receive(socket)));
        Thread.sleep(200); // in recvmmsg by now, most likely; if not, it returns at once all the same

        socket.shutdownInput();
        t.join(5_000);

        assertFalse(t.isAlive(), "the receiver woke");
        assertNotEquals(Integer.MIN_VALUE, result.get());
        socket.close();
        assertEquals(-1, socket.fd());
    }

    @Test
    void shouldCarryIpv6AndReportItsBoundPort() throws Exception {
        try (Arena arena = Arena.ofConfined(); UdpSocket socket = UdpSocket.open(new InetSocketAddress("::1", 0));
             DatagramSocket peer = new DatagramSocket(new InetSocketAddress("::1", 0))) {
            peer.setSoTimeout(5_000);
            assertTrue(socket.ipv6());
            assertTrue(socket.localPort() > 0);
            MemorySegment one = bytes(arena, (byte) 6);
            UdpSocket.Address to = UdpSocket.Address.of((InetSocketAddress) peer.getLocalSocketAddress());
            assertEquals(1, new UdpSocket.Sender(1).send(socket, new UdpSocket.Address[] {to}, 0, 1, one, 0, 1, one, 0, 1));
            assertArrayEquals(new byte[] {6, 6}, receive(peer));

            peer.send(new DatagramPacket(new byte[] {5}, 1, new InetSocketAddress("::1", socket.localPort())));
            UdpSocket.Receiver rx = new UdpSocket.Receiver(2, 8);
            assertEquals(1, rx.receive(socket));
            assertEquals(0, rx.senderAmong(0, new UdpSocket.Address[] {to}));
        }
    }

    @Test
    void shouldRefuseAPortInUseWithItsErrno() throws Exception {
        try (UdpSocket first = UdpSocket.open(new InetSocketAddress(LOOPBACK, 0))) {
            NativeException e = assertThrows(NativeException.class,
                    () -> UdpSocket.open(new InetSocketAddress(LOOPBACK, first.localPort())));
            assertEquals(98, e.errno(), e.getMessage()); // EADDRINUSE
        }
    }
}
