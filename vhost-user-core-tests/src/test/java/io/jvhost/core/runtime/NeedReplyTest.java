package io.jvhost.core.runtime;

import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.protocol.Header;
import io.jvhost.core.device.ProtocolFeatures;
import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.testkit.Payloads.NOFD;
import static io.jvhost.testkit.Payloads.NONE;
import static io.jvhost.testkit.Payloads.config;
import static io.jvhost.testkit.Payloads.memReg;
import static io.jvhost.testkit.Payloads.memTable;
import static io.jvhost.testkit.Payloads.u64;
import static io.jvhost.testkit.Payloads.vringAddr;
import static io.jvhost.testkit.Payloads.vringState;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.Payloads.Region;
import io.jvhost.testkit.TestDevice;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * NEED_REPLY and REPLY_ACK (vhost-user spec, "REPLY_ACK"): once REPLY_ACK is negotiated, a request
 * without a reply of its own that sets NEED_REPLY is acked, 0 when the backend did what was asked
 * and non-zero when it refused; without REPLY_ACK the flag asks for nothing and no ack is sent.
 * Requests with a reply of their own get that reply, once, either way.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class NeedReplyTest {
    private static final long REPLY_ACK = ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK);
    private static BackendFixture fx;

    @BeforeAll
    static void startBackend() throws IOException {
        fx = BackendFixture.start(TestDevice.withQueues(2).build());
    }

    @AfterAll
    static void stopBackend() throws IOException {
        fx.close();
    }

    /** What one case needs on the guest's side. */
    static final class Env implements AutoCloseable {
        final GuestRam ram = new GuestRam(1 << 20);
        final DriverQueue q = new DriverQueue(ram, 0, 64);
        final Fd eventFd = EventFd.create();
        final Fd[] channel = UnixSockets.pair();

        Env() throws NativeException {
        }

        Region region() {
            return Region.of(ram, 0);
        }

        @Override
        public void close() {
            q.close();
            eventFd.close();
            Fd.closeAll(channel);
            ram.close();
        }
    }

    /** How a case sends its request: asking for an ack and reading it, or just setting NEED_REPLY. */
    @FunctionalInterface
    interface Send {
        long send(int request, byte[] payload, Fd... fds) throws IOException;
    }

    @FunctionalInterface
    interface Action {
        long ack(Send send, Frontend f, Env env) throws IOException;
    }

    /** A request as {@code action} sends it, and whether the backend must accept it. */
    record Case(String name, boolean accepted, Action action) {
        @Override
        public String toString() {
            return name + (accepted ? " (accepted)" : " (refused)");
        }
    }

    private static Case ok(String name, int request, byte[] payload) {
        return new Case(name, true, (s, f, e) -> s.send(request, payload));
    }

    private static Case refused(String name, int request, byte[] payload) {
        return new Case(name, false, (s, f, e) -> s.send(request, payload));
    }

    static List<Case> cases() {
        long offered = TestDevice.DEVICE_FEATURE | MessageHandlingTest.FRAMEWORK_FEATURES;
        List<Case> c = new ArrayList<>();
        c.add(ok("SET_FEATURES", SET_FEATURES, u64(offered)));
        c.add(refused("SET_FEATURES", SET_FEATURES, u64(1L << 40)));
        c.add(ok("SET_OWNER", SET_OWNER, NONE));
        c.add(refused("SET_OWNER", SET_OWNER, u64(0)));
        c.add(ok("RESET_OWNER", RESET_OWNER, NONE));
        c.add(ok("RESET_DEVICE", RESET_DEVICE, NONE));
        // Every offered protocol feature, REPLY_ACK kept as negotiated (dropping it drops the ack too).
        c.add(new Case("SET_PROTOCOL_FEATURES", true, (s, f, e) -> s.send(SET_PROTOCOL_FEATURES,
                u64(FeaturePolicy.PROTOCOL_FEATURES & ~REPLY_ACK | (f.replyAck() ? REPLY_ACK : 0)))));
        c.add(refused("SET_PROTOCOL_FEATURES", SET_PROTOCOL_FEATURES, u64(1L << 14)));
        c.add(new Case("SET_MEM_TABLE", true, (s, f, e) -> s.send(SET_MEM_TABLE, memTable(e.region()), e.ram.fd())));
        c.add(new Case("SET_MEM_TABLE", false, (s, f, e) -> s.send(SET_MEM_TABLE,
                memTable(new Region(0, 0, GuestRam.HVA_BASE, 0)), e.ram.fd())));
        c.add(new Case("ADD_MEM_REG", true, (s, f, e) -> s.send(ADD_MEM_REG, memReg(e.region()), e.ram.fd())));
        c.add(new Case("ADD_MEM_REG", false, (s, f, e) -> s.send(ADD_MEM_REG,
                memReg(new Region(0, 2 << 20, GuestRam.HVA_BASE, 0)), e.ram.fd())));
        c.add(new Case("REM_MEM_REG", true, (s, f, e) -> {
            assertEquals(0, f.request(ADD_MEM_REG, memReg(e.region()), e.ram.fd()));
            return s.send(REM_MEM_REG, memReg(e.region()));
        }));
        c.add(new Case("REM_MEM_REG", false, (s, f, e) -> s.send(REM_MEM_REG, memReg(e.region()))));
        c.add(new Case("SET_LOG_FD", false, (s, f, e) -> s.send(SET_LOG_FD, NONE, e.eventFd)));
        c.add(ok("SET_VRING_NUM", SET_VRING_NUM, vringState(0, 64)));
        c.add(refused("SET_VRING_NUM", SET_VRING_NUM, vringState(0, 63)));
        c.add(new Case("SET_VRING_ADDR", true, (s, f, e) -> s.send(SET_VRING_ADDR,
                vringAddr(0, 0, e.q.descHva(), e.q.usedHva(), e.q.availHva(), 0))));
        c.add(refused("SET_VRING_ADDR", SET_VRING_ADDR, vringAddr(0, 0, 0x1008, 0x2000, 0x3000, 0)));
        c.add(ok("SET_VRING_BASE", SET_VRING_BASE, vringState(0, 7)));
        c.add(refused("SET_VRING_BASE", SET_VRING_BASE, vringState(0, 0x10000)));
        for (int request : new int[] {SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR}) {
            String name = MessageType.name(request);
            c.add(new Case(name, true, (s, f, e) -> s.send(request, u64(1), e.eventFd)));
            c.add(ok(name + " NOFD", request, u64(1 | NOFD)));
            c.add(new Case(name, false, (s, f, e) -> s.send(request, u64(2), e.eventFd)));
        }
        c.add(ok("SET_VRING_ENABLE", SET_VRING_ENABLE, vringState(1, 1)));
        c.add(ok("SET_VRING_ENABLE 1024", SET_VRING_ENABLE, vringState(1, 1024)));
        c.add(refused("SET_VRING_ENABLE", SET_VRING_ENABLE, vringState(2, 1)));
        c.add(refused("SEND_RARP", SEND_RARP, u64(0x5254_0012_3456L)));
        c.add(refused("NET_SET_MTU", NET_SET_MTU, u64(1500)));
        c.add(new Case("SET_BACKEND_REQ_FD", true, (s, f, e) -> s.send(SET_BACKEND_REQ_FD, NONE, e.channel[1])));
        c.add(refused("SET_BACKEND_REQ_FD", SET_BACKEND_REQ_FD, NONE));
        c.add(ok("SET_CONFIG", SET_CONFIG, config(0, 2, 0, new byte[] {5, 6})));
        c.add(refused("SET_CONFIG", SET_CONFIG, config(100, 2, 0, new byte[] {5, 6})));
        c.add(new Case("SET_INFLIGHT_FD", false, (s, f, e) -> s.send(SET_INFLIGHT_FD, new byte[24], e.ram.fd())));
        c.add(ok("SET_STATUS", SET_STATUS, u64(0x0F)));
        c.add(refused("SET_STATUS", SET_STATUS, u64(0x1_0000)));
        c.add(refused("SET_VRING_ENDIAN", SET_VRING_ENDIAN, vringState(0, 0)));
        c.add(refused("IOTLB_MSG", IOTLB_MSG, new byte[32]));
        c.add(refused("request 77", 77, NONE));
        return c;
    }

    @ParameterizedTest(name = "REPLY_ACK negotiated: {0}")
    @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
    void shouldAnswerSetLogBaseWithItsOwnEmptyReplyRatherThanAnAck(boolean replyAck) throws IOException {
        try (Env env = new Env(); Frontend f = fx.connect()) {
            long pf = ProtocolFeatures.bit(ProtocolFeatures.LOG_SHMFD);
            f.setProtocolFeatures(replyAck ? pf | ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK) : pf);
            f.send(SET_LOG_BASE, Header.VERSION | Header.NEED_REPLY, Payloads.logBase(4096, 0), env.ram.fd());
            Frontend.Reply r = f.readReply();
            assertEquals(SET_LOG_BASE, r.request());
            assertEquals(0, r.payload().length, "the empty reply QEMU waits for, not an 8-byte ack");
            assertEquals(2, f.getQueueNum(), "exactly one reply per request: the next one answers its own");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void shouldAckZeroOnSuccessAndNonZeroOnRefusalWhenNeedReplyIsSetAndReplyAckNegotiated(Case c) throws IOException {
        try (Env env = new Env(); Frontend f = fx.connect()) {
            f.setProtocolFeatures(REPLY_ACK);
            long ack = c.action().ack(f::requestWithAck, f, env);
            if (c.accepted()) {
                assertEquals(0, ack, c + " refused");
            } else {
                assertNotEquals(0, ack, c + " accepted");
            }
            assertEquals(2, f.getQueueNum(), "exactly one reply per request: the next one answers its own");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void shouldNotAckWhenNeedReplyIsSetButReplyAckWasNotNegotiated(Case c) throws IOException {
        try (Env env = new Env(); Frontend f = fx.connect()) {
            c.action().ack((request, payload, fds) -> {
                f.send(request, Header.VERSION | Header.NEED_REPLY, payload, fds);
                return -1;
            }, f, env);
            assertEquals(2, f.getQueueNum(), "no ack: the first reply is the next request's own");
        }
    }

    @Test
    void shouldAckTheSetProtocolFeaturesThatNegotiatesReplyAck() throws IOException {
        try (Frontend f = fx.connect()) {
            assertEquals(0, f.requestWithAck(SET_PROTOCOL_FEATURES, u64(REPLY_ACK)));
            assertEquals(0, f.requestWithAck(SET_OWNER, NONE), "and every request after it");
        }
    }

    @Test
    void shouldNotAckTheSetProtocolFeaturesThatDropsReplyAckNorAnyRequestAfterIt() throws IOException {
        try (Frontend f = fx.connect()) {
            f.setProtocolFeatures(REPLY_ACK);
            f.send(SET_PROTOCOL_FEATURES, Header.VERSION | Header.NEED_REPLY, u64(0));
            f.send(SET_OWNER, Header.VERSION | Header.NEED_REPLY, NONE);
            assertEquals(2, f.getQueueNum(), "no ack for either: the first reply is GET_QUEUE_NUM's");
        }
    }

    static Stream<Arguments> ownReplies() {
        return Stream.of(
                Arguments.of("GET_FEATURES", GET_FEATURES, NONE, 8),
                Arguments.of("GET_PROTOCOL_FEATURES", GET_PROTOCOL_FEATURES, NONE, 8),
                Arguments.of("GET_QUEUE_NUM", GET_QUEUE_NUM, NONE, 8),
                Arguments.of("GET_MAX_MEM_SLOTS", GET_MAX_MEM_SLOTS, NONE, 8),
                Arguments.of("GET_STATUS", GET_STATUS, NONE, 8),
                Arguments.of("GET_VRING_BASE", GET_VRING_BASE, vringState(1, 0), 8),
                Arguments.of("GET_CONFIG", GET_CONFIG, Payloads.configRead(0, 4), 16));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("ownReplies")
    void shouldAnswerARequestWithItsOwnReplyOnceWhateverNeedReplyAndReplyAckSay(String name, int request, byte[] payload,
                                                                             int replySize) throws IOException {
        for (boolean replyAck : new boolean[] {false, true}) {
            for (int flags : new int[] {Header.VERSION, Header.VERSION | Header.NEED_REPLY}) {
                try (Frontend f = fx.connect()) {
                    f.setProtocolFeatures(replyAck ? REPLY_ACK : 0);
                    f.send(request, flags, payload);
                    Frontend.Reply r = f.readReply();
                    String what = name + " flags " + flags + " REPLY_ACK " + replyAck;
                    assertEquals(request, r.request(), what);
                    assertEquals(Header.VERSION | Header.REPLY, r.flags(), what);
                    assertEquals(replySize, r.payload().length, what);
                    assertEquals(2, f.getQueueNum(), what + ": exactly one reply");
                }
            }
        }
    }
}
