package io.jvhost.net;

import static io.jvhost.core.device.VirtioFeatures.*;

import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.net.ScriptedPort.Seen;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The net-specific vhost-user requests: NET_SET_MTU and SEND_RARP (vhost-user spec; QEMU sends them
 * only when the backend offers the MTU and RARP protocol features), and the MTU in the config space.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NetSimulatorControlTest {
    private ScriptedPort port;
    private NetRig rig;

    private void serve() throws Exception {
        port = new ScriptedPort(1);
        rig = NetRig.serve(port, 1).start(MODERN | 1L << NET_MTU);
    }

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
        if (port != null) {
            port.close();
        }
    }

    private static long bit(int protocolFeature) {
        return ProtocolFeatures.bit(protocolFeature);
    }

    /** NET_SET_MTU, acked because the QEMU-like handshake took REPLY_ACK. */
    private long setMtu(long mtu) throws Exception {
        return rig.frontend.request(MessageType.NET_SET_MTU, ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(mtu).array());
    }

    private int configMtu() throws Exception {
        byte[] c = rig.frontend.getConfig(0, 12);
        return c[10] & 0xFF | (c[11] & 0xFF) << 8;
    }

    /** Sends a frame of {@code length} and reports whether the port was handed it. */
    private boolean accepted(int length) throws Exception {
        byte[] f = frame(length, length);
        long dropped = rig.counters(0).txDropped;
        rig.transmit(0, f, 12, 600);
        if (rig.counters(0).txDropped > dropped) {
            assertNull(port.seen.poll());
            return false;
        }
        assertArrayEquals(f, port.awaitSeen().frame());
        return true;
    }

    @Test
    void shouldOfferTheMtuAndRarpProtocolFeaturesItImplements() throws Exception {
        serve();

        long offered = rig.frontend.getProtocolFeatures();

        assertEquals(bit(ProtocolFeatures.MTU), offered & bit(ProtocolFeatures.MTU));
        assertEquals(bit(ProtocolFeatures.RARP), offered & bit(ProtocolFeatures.RARP));
        assertEquals(bit(ProtocolFeatures.REPLY_ACK), offered & bit(ProtocolFeatures.REPLY_ACK));
    }

    @Test
    void shouldTellTheDriverTheMtuInTheConfigSpace() throws Exception {
        serve();

        assertEquals(1L << NET_MTU, rig.offered & 1L << NET_MTU);
        assertEquals(1500, configMtu());
    }

    @Test
    void shouldChangeTheLargestAcceptedFrameWhenTheFrontendSetsTheMtu() throws Exception {
        serve();
        assertTrue(accepted(1518));
        assertFalse(accepted(1519));

        assertEquals(0, setMtu(9000), "NET_SET_MTU acked");

        assertEquals(9000, configMtu());
        assertTrue(accepted(9018));
        assertFalse(accepted(9019));

        assertEquals(0, setMtu(576));
        assertTrue(accepted(594));
        assertFalse(accepted(595));
        assertFalse(accepted(1518));
    }

    @ParameterizedTest(name = "MTU {0}")
    @ValueSource(longs = {0, 67, 65518, 65536, -1})
    void shouldRefuseAnMtuVirtioNetCannotCarryAndKeepTheOldOne(long mtu) throws Exception {
        serve();

        assertNotEquals(0, setMtu(mtu), "a refusal is acked as a failure");

        assertEquals(1518, rig.device.nic().maxFrame());
        assertEquals(1500, configMtu());
        assertTrue(accepted(1518), "the connection still serves");
    }

    @Test
    void shouldAcceptTheSmallestAndLargestMtu() throws Exception {
        serve();

        assertEquals(0, setMtu(68));
        assertEquals(68 + 18, rig.device.nic().maxFrame());
        assertEquals(0, setMtu(65535 - 18));
        assertEquals(65535, rig.device.nic().maxFrame());
    }

    /**
     * SEND_RARP carries the MAC as the first 6 bytes of its u64 payload (QEMU copies the address
     * there byte by byte), and the port is handed a RARP frame as QEMU's announce-self makes it.
     */
    @Test
    void shouldHandThePortARarpAnnouncementForTheMacOfSendRarp() throws Exception {
        serve();
        byte[] mac = {0x52, 0x54, 0x00, (byte) 0xAB, (byte) 0xCD, (byte) 0xEF};
        byte[] payload = new byte[8];
        System.arraycopy(mac, 0, payload, 0, 6);

        assertEquals(0, rig.frontend.request(MessageType.SEND_RARP, payload));

        Seen s = port.awaitSeen();
        assertEquals(0, s.pair());
        ByteBuffer want = ByteBuffer.allocate(60);
        want.put(new byte[] {-1, -1, -1, -1, -1, -1}).put(mac).putShort((short) 0x8035); // broadcast, RARP
        want.putShort((short) 1).putShort((short) 0x0800).put((byte) 6).put((byte) 4).putShort((short) 3); // reverse request
        want.put(mac).putInt(0).put(mac).putInt(0); // sender and target: the MAC, no IP
        assertArrayEquals(want.array(), s.frame());
    }

    /**
     * SEND_RARP arrives on the control thread while the guest transmits; the port hears the
     * announcement where it hears every frame, on the pair's poller (NetPort's contract), and
     * neither the announcements nor the guest's frames go missing.
     */
    @Test
    void shouldHandTheRarpAnnouncementToThePortOnThePairsPollerWhileTheGuestTransmits() throws Exception {
        serve();
        String poller = rig.backend.poller(1).name(); // pair 0's transmit queue
        byte[] payload = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0};
        int rounds = 20, perRound = 16;
        List<byte[]> sent = new ArrayList<>();

        for (int r = 0; r < rounds; r++) {
            for (int i = 0; i < perRound; i++) {
                byte[] f = frame(60 + i, r * perRound + i);
                sent.add(f);
                rig.send(0, f);
            }
            assertEquals(0, rig.frontend.request(MessageType.SEND_RARP, payload), "SEND_RARP acked");
            for (int i = 0; i < perRound; i++) {
                rig.awaitTx(0);
            }
        }

        int rarps = 0;
        List<byte[]> frames = new ArrayList<>();
        for (int n = 0; n < rounds * (perRound + 1); n++) {
            Seen s = port.awaitSeen();
            assertEquals(poller, s.thread().getName(), "onFrame only on the pair's poller");
            assertEquals(0, s.pair());
            if (s.frame()[12] == (byte) 0x80 && s.frame()[13] == 0x35) {
                rarps++;
            } else {
                frames.add(s.frame());
            }
        }
        assertEquals(rounds, rarps, "every announcement reached the port");
        assertEquals(sent.size(), frames.size(), "every guest frame reached the port");
        for (int i = 0; i < sent.size(); i++) {
            assertArrayEquals(sent.get(i), frames.get(i), "guest frame " + i + ", in order");
        }
        assertNull(port.seen.poll(100, TimeUnit.MILLISECONDS), "nothing else");
    }

    @Test
    void shouldReflectTheRarpAnnouncementIntoTheGuestThroughTheReceiveQueue() throws Exception {
        rig = NetRig.serve(new BenchPorts.Reflect(), 1).start(MODERN);
        rig.postRx(0, 1, 2048);
        byte[] payload = {0x52, 0x54, 0x00, 0x01, 0x02, 0x03, 0, 0};

        assertEquals(0, rig.frontend.request(MessageType.SEND_RARP, payload));

        byte[] f = rig.awaitFrame(0).frame();
        assertEquals(60, f.length);
        assertArrayEquals(new byte[] {0x52, 0x54, 0x00, 0x01, 0x02, 0x03, -1, -1, -1, -1, -1, -1, (byte) 0x80, 0x35},
                Arrays.copyOf(f, 14), "the announcement with its MACs swapped");
    }
}
