package io.jvhost.core.transport;

import io.jvhost.core.protocol.Header;
import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.testkit.Payloads.NONE;
import static io.jvhost.testkit.Payloads.u64;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.Frontend.Reply;
import io.jvhost.core.sys.Fd;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.OpenFds.Probe;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.Payloads.Region;
import io.jvhost.testkit.TestDevice;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Framing on the socket: headers with bad flags, versions or sizes end the connection (and only
 * that connection: the server accepts the next frontend and serves it), messages split or packed
 * any way the kernel likes are read correctly, and fds never outlive the connection they came on.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class ConnectionFramingTest {
    private BackendFixture fx;
    private long offered;

    @BeforeEach
    void startBackend() throws IOException {
        fx = BackendFixture.start(TestDevice.withQueues(2).build());
        offered = fx.awaitSessionsEnded();
    }

    @AfterEach
    void stopBackend() throws IOException {
        fx.close();
    }

    private static byte[] header(int request, int flags, int size) {
        return ByteBuffer.allocate(12).order(ByteOrder.LITTLE_ENDIAN).putInt(request).putInt(flags).putInt(size).array();
    }

    private static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        byte[] out = new byte[n];
        int at = 0;
        for (byte[] p : parts) {
            System.arraycopy(p, 0, out, at, p.length);
            at += p.length;
        }
        return out;
    }

    /** The connection was dropped, and a new frontend is then accepted and served. */
    private void assertDroppedAndServerServesTheNext(Frontend f) throws IOException {
        assertTrue(f.isClosedByBackend(5000), "connection dropped");
        assertEquals(offered, fx.awaitSessionsEnded(), "next frontend served");
    }

    @ParameterizedTest
    @ValueSource(ints = {0x0, 0x2, 0x3, 0x5, 0xD, 0x10, 0x11, 0x101, 0x8000_0001, 0xFFFF_FFFF})
    void shouldDropTheConnectionOnBadHeaderFlagsAndServeTheNextFrontend(int flags) throws IOException {
        try (Frontend f = fx.connect()) {
            f.send(GET_FEATURES, flags, NONE);
            assertDroppedAndServerServesTheNext(f);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {Header.MAX_PAYLOAD + 1, 65536, 0x7FFF_FFFF, 0xFFFF_FFFF})
    void shouldDropTheConnectionOnAPayloadOverTheLimitAndServeTheNextFrontend(int size) throws IOException {
        try (Frontend f = fx.connect()) {
            f.sendRaw(header(SET_CONFIG, Header.VERSION, size));
            assertDroppedAndServerServesTheNext(f);
        }
    }

    @Test
    void shouldReadAPayloadOfExactlyTheLimit() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertNotEquals(0, f.requestWithAck(99, new byte[Header.MAX_PAYLOAD]), "read whole, then refused");
            assertEquals(offered, f.getFeatures());
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {9, 16, 32})
    void shouldDropTheConnectionOnMoreThanEightFdsAndCloseThemAll(int count) throws IOException {
        try (Probe p = OpenFds.probe(); Frontend f = fx.connect()) {
            Fd[] fds = new Fd[count];
            Arrays.fill(fds, p.fd());
            f.send(SET_OWNER, Header.VERSION, NONE, fds);
            assertDroppedAndServerServesTheNext(f);
            assertEquals(1, p.openCopies(), "all received copies closed");
        }
    }

    @Test
    void shouldCloseTheFdsOfAMessageCutShortByTheFrontendLeaving() throws IOException {
        try (Probe p = OpenFds.probe()) {
            try (Frontend f = fx.connect()) {
                f.sendRaw(header(SET_VRING_CALL, Header.VERSION, 8), p.fd()); // the payload never comes
            }
            fx.awaitSessionsEnded();
            assertEquals(1, p.openCopies());
        }
    }

    @Test
    void shouldReadAMessageSentOneByteAtATime() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            byte[] bytes = concat(header(SET_STATUS, Header.VERSION | Header.NEED_REPLY, 8), u64(0x0B));
            for (byte b : bytes) {
                f.sendRaw(new byte[] {b});
            }
            Reply ack = f.readReply();
            assertEquals(SET_STATUS, ack.request());
            assertEquals(0, ack.u64());
            assertEquals(0x0B, f.getStatus());
        }
    }

    @Test
    void shouldKeepFdsThatArriveWithTheHeaderWhenThePayloadComesLater() throws IOException {
        try (Probe p = OpenFds.probe(1 << 16); Frontend f = fx.connectWithAcks()) {
            byte[] payload = Payloads.memReg(new Region(0, 1 << 16, 0x7000_0000L, 0));
            f.sendRaw(header(ADD_MEM_REG, Header.VERSION | Header.NEED_REPLY, payload.length), p.fd());
            f.sendRaw(Arrays.copyOfRange(payload, 0, 13));
            f.sendRaw(Arrays.copyOfRange(payload, 13, payload.length));
            assertEquals(0, f.readReply().u64());
            assertEquals(1, p.mappings());
        }
    }

    @Test
    void shouldAnswerSeveralMessagesSentInOneWriteInOrder() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            f.sendRaw(concat(header(GET_FEATURES, Header.VERSION, 0), header(GET_QUEUE_NUM, Header.VERSION, 0),
                    header(SET_OWNER, Header.VERSION | Header.NEED_REPLY, 0), header(GET_MAX_MEM_SLOTS, Header.VERSION, 0)));
            assertEquals(offered, f.readReply().u64());
            assertEquals(2, f.readReply().u64());
            Reply ack = f.readReply();
            assertEquals(SET_OWNER, ack.request());
            assertEquals(0, ack.u64());
            assertEquals(509, f.readReply().u64());
        }
    }

    @Test
    void shouldServeAFrontendThatWaitedWhileAnotherWasConnected() throws IOException {
        Frontend first = fx.connect();
        try (Frontend second = fx.connect()) {
            try (first) {
                assertEquals(offered, first.getFeatures());
                second.send(GET_QUEUE_NUM, Header.VERSION, NONE);
                assertEquals(2, first.getQueueNum(), "one frontend at a time");
            }
            assertEquals(2, second.readReply().u64(), "the waiting one is served once the first has gone");
        }
    }

    @Test
    void shouldHoldNoFdOfAThousandShortConnections() throws IOException {
        Map<Integer, String> before = fx.fdsWhileIdle();
        for (int i = 0; i < 1000; i++) {
            try (Frontend f = fx.connect()) {
                if (i % 2 == 0) {
                    f.getFeatures();
                }
            }
        }
        Map<Integer, String> after = fx.fdsWhileIdle();
        assertEquals(before.size(), after.size(), () -> OpenFds.difference(before, after));
    }
}
