package io.jvhost.core.runtime;

import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.protocol.Header;
import static io.jvhost.core.protocol.MessageType.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.OpenFds.Probe;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.Payloads.Region;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.Tuple;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;

/**
 * Random messages (random header fields, payloads that do or do not fit the request, lying sizes,
 * any number of fds) on a fresh connection and on one with a running queue. Whatever they are, the
 * backend lives on: a well-formed GET_FEATURES on the next connection is answered, and nothing
 * the random messages carried (fds, mappings, a dirty log that SET_LOG_BASE mapped while LOG_ALL
 * was on) is still held once their connection has ended.
 *
 * <p>Each try runs under a deadline ({@code assertTimeoutPreemptively}), since jqwik has no
 * {@code @Timeout}.
 */
class MalformedMessageFuzzTest {
    static final Duration TRY_TIMEOUT = Duration.ofSeconds(30);
    static final int PROBE_SIZE = 1 << 16;
    static final String GUEST_RAM = "/memfd:jvhost-guest-ram";

    private static BackendFixture fx;
    private static long offered;

    @BeforeContainer
    static void startBackend() throws IOException {
        fx = BackendFixture.start(TestDevice.withQueues(2).build());
        offered = fx.awaitSessionsEnded();
    }

    @AfterContainer
    static void stopBackend() throws IOException {
        fx.close();
    }

    /** One message as it goes on the wire; its fds are copies of the try's probe memfd or eventfd. */
    record Raw(int request, int flags, int declaredSize, byte[] payload, int fdCount, boolean eventFds) {
        byte[] bytes() {
            return ByteBuffer.allocate(12 + payload.length).order(ByteOrder.LITTLE_ENDIAN)
                    .putInt(request).putInt(flags).putInt(declaredSize).put(payload).array();
        }

        @Override
        public String toString() {
            return MessageType.name(request) + " flags 0x" + Integer.toHexString(flags) + " size "
                    + Integer.toUnsignedString(declaredSize) + " payload " + payload.length + " bytes "
                    + Arrays.toString(Arrays.copyOf(payload, Math.min(payload.length, 48))) + " with " + fdCount
                    + (eventFds ? " eventfds" : " memfds");
        }
    }

    // ---- generators ----------------------------------------------------------------------------

    private static <T> Tuple.Tuple2<Integer, Arbitrary<? extends T>> weight(int w, Arbitrary<? extends T> a) {
        return Tuple.of(w, a);
    }

    private static Arbitrary<Integer> index() {
        return Arbitraries.frequencyOf(weight(8, Arbitraries.integers().between(0, 2)), weight(1, Arbitraries.integers()));
    }

    private static Arbitrary<Long> anyLong() {
        return Arbitraries.frequencyOf(weight(3, Arbitraries.longs().between(0, 300)),
                weight(2, Arbitraries.integers().between(0, 63).map(b -> 1L << b)), weight(2, Arbitraries.longs()));
    }

    private static Arbitrary<Long> hva() {
        return Arbitraries.frequencyOf(
                weight(4, Arbitraries.longs().between(0, 2 * PROBE_SIZE).map(o -> GuestRam.HVA_BASE + (o & ~15L))),
                weight(1, Arbitraries.longs()));
    }

    private static Arbitrary<Region> region() {
        Arbitrary<Long> gpa = Arbitraries.frequencyOf(weight(4, Arbitraries.longs().between(0, 4).map(i -> i * PROBE_SIZE)),
                weight(1, Arbitraries.longs()));
        Arbitrary<Long> size = Arbitraries.frequencyOf(weight(4, Arbitraries.of(4096L, (long) PROBE_SIZE, 0L, PROBE_SIZE + 4096L)),
                weight(1, Arbitraries.longs()));
        Arbitrary<Long> offset = Arbitraries.frequencyOf(weight(4, Arbitraries.of(0L, 4096L, (long) PROBE_SIZE)),
                weight(1, Arbitraries.longs()));
        return Combinators.combine(gpa, size, hva(), offset).as(Region::new);
    }

    /** Sizes and offsets for SET_LOG_BASE: often ones that map (the log is then live), sometimes not. */
    private static Arbitrary<Long> logBytes() {
        return Arbitraries.frequencyOf(weight(4, Arbitraries.of(0L, 8L, 4096L, (long) PROBE_SIZE, PROBE_SIZE + 4096L)),
                weight(1, anyLong()));
    }

    private static Arbitrary<byte[]> randomBytes(int min, int max) {
        return Arbitraries.bytes().array(byte[].class).ofMinSize(min).ofMaxSize(max);
    }

    /** A payload shaped for {@code request}: right layout, values from plausible to absurd. */
    private static Arbitrary<byte[]> payloadFor(int request) {
        Arbitrary<Integer> num = Arbitraries.frequencyOf(weight(4, Arbitraries.of(0, 1, 2, 64, 128, 256, 0xFFFF)),
                weight(1, Arbitraries.integers()));
        return switch (request) {
            case SET_FEATURES, SET_PROTOCOL_FEATURES, SET_STATUS, NET_SET_MTU, SEND_RARP -> anyLong().map(Payloads::u64);
            case SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ENABLE, GET_VRING_BASE ->
                    Combinators.combine(index(), num).as(Payloads::vringState);
            case SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR -> Combinators.combine(index(),
                    Arbitraries.of(0, Payloads.NOFD), Arbitraries.frequencyOf(weight(6, Arbitraries.just(0L)), weight(1, anyLong())))
                    .as((i, nofd, junk) -> Payloads.u64((i & 0xFF) | nofd | junk));
            case SET_VRING_ADDR -> Combinators.combine(index(), Arbitraries.of(0, 1, 2), hva(), hva(), hva(), anyLong())
                    .as(Payloads::vringAddr);
            case ADD_MEM_REG, REM_MEM_REG -> region().map(Payloads::memReg);
            case SET_MEM_TABLE -> Combinators.combine(Arbitraries.integers().between(0, 10), region().list().ofMaxSize(9))
                    .as((n, rs) -> Payloads.memTable(n, rs.toArray(new Region[0])));
            case GET_CONFIG, SET_CONFIG -> Combinators.combine(Arbitraries.integers().between(0, 300),
                    Arbitraries.integers().between(0, 300), Arbitraries.integers(), randomBytes(0, 300))
                    .as(Payloads::config);
            case SET_LOG_BASE -> Combinators.combine(logBytes(), logBytes()).as(Payloads::logBase);
            default -> Arbitraries.just(Payloads.NONE);
        };
    }

    private static Arbitrary<byte[]> anyPayload() {
        return Arbitraries.frequencyOf(weight(3, Arbitraries.just(Payloads.NONE)), weight(3, anyLong().map(Payloads::u64)),
                weight(4, randomBytes(0, 300)), weight(1, randomBytes(300, Header.MAX_PAYLOAD)));
    }

    private static Arbitrary<Raw> raw() {
        Arbitrary<Integer> request = Arbitraries.frequencyOf(weight(12, Arbitraries.integers().between(0, 41)),
                weight(1, Arbitraries.integers()));
        Arbitrary<Tuple.Tuple2<Integer, byte[]>> requestAndPayload = request.flatMap(r -> Arbitraries.frequencyOf(
                weight(3, payloadFor(r)), weight(1, anyPayload())).map(p -> Tuple.of(r, p)));
        Arbitrary<Integer> flags = Arbitraries.frequencyOf(weight(8, Arbitraries.just(Header.VERSION)),
                weight(8, Arbitraries.just(Header.VERSION | Header.NEED_REPLY)),
                weight(1, Arbitraries.integers().between(0, 0x1F)), weight(1, Arbitraries.integers()));
        Arbitrary<Integer> sizeError = Arbitraries.frequencyOf(weight(14, Arbitraries.just(0)),
                weight(1, Arbitraries.integers().between(-16, 16)), weight(1, Arbitraries.integers()));
        Arbitrary<Integer> fdCount = Arbitraries.frequencyOf(weight(10, Arbitraries.just(0)), weight(8, Arbitraries.just(1)),
                weight(2, Arbitraries.integers().between(2, 10)));
        return Combinators.combine(requestAndPayload, flags, sizeError, fdCount, Arbitraries.of(true, false))
                .as((rp, fl, err, fds, ev) -> new Raw(rp.get1(), fl, rp.get2().length + err, rp.get2(), fds, ev));
    }

    @Provide
    Arbitrary<List<Raw>> messages() {
        return raw().list().ofMinSize(1).ofMaxSize(6);
    }

    // ---- properties ----------------------------------------------------------------------------

    /** Sends {@code m}; false once the backend has dropped the connection. */
    private static boolean send(Frontend f, Raw m, Fd memfd, Fd eventFd) {
        Fd[] fds = new Fd[m.fdCount()];
        Arrays.fill(fds, m.eventFds() ? eventFd : memfd);
        try {
            f.sendRaw(m.bytes(), fds);
            return true;
        } catch (IOException e) {
            return false; // dropped: that is allowed
        }
    }

    private static void assertBackendServesAndHoldsNothingOf(Probe probe, long eventFdsBefore) throws IOException {
        assertEquals(offered, fx.awaitSessionsEnded(), "a well-formed GET_FEATURES on a fresh connection is answered");
        assertEquals(1, probe.openCopies(), "every fd the messages carried is closed");
        assertEquals(0, probe.mappings(), "nothing they described is still mapped");
        assertEquals(eventFdsBefore, OpenFds.countLinksTo(OpenFds.EVENTFD), "no eventfd kept");
    }

    @Property(tries = 400)
    void shouldSurviveAnyMessagesOnAFreshConnection(@ForAll("messages") List<Raw> messages) {
        assertTimeoutPreemptively(TRY_TIMEOUT, () -> {
            try (Probe probe = OpenFds.probe(PROBE_SIZE); Fd eventFd = EventFd.create()) {
                long eventFds = OpenFds.countLinksTo(OpenFds.EVENTFD);
                try (Frontend f = fx.connect()) {
                    for (Raw m : messages) {
                        if (!send(f, m, probe.fd(), eventFd)) {
                            break;
                        }
                    }
                }
                assertBackendServesAndHoldsNothingOf(probe, eventFds);
            }
        });
    }

    @Property(tries = 200)
    void shouldSurviveAnyMessagesToADeviceWithARunningQueue(@ForAll("messages") List<Raw> messages) {
        assertTimeoutPreemptively(TRY_TIMEOUT, () -> {
            try (Probe probe = OpenFds.probe(PROBE_SIZE); Fd eventFd = EventFd.create();
                 GuestRam ram = new GuestRam(PROBE_SIZE); DriverQueue q = new DriverQueue(ram, 0, 64)) {
                long eventFds = OpenFds.countLinksTo(OpenFds.EVENTFD);
                long ramMappings = OpenFds.mappingsOf(GUEST_RAM);
                try (Frontend f = fx.connect()) {
                    f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
                    Traffic.echo(q, 1, 0);
                    for (Raw m : messages) {
                        if (!send(f, m, probe.fd(), eventFd)) {
                            break;
                        }
                    }
                    q.post(Traffic.request(ram, Traffic.pattern(16, 1)).buffers()); // whatever state the ring is in now
                }
                assertBackendServesAndHoldsNothingOf(probe, eventFds);
                assertEquals(ramMappings, OpenFds.mappingsOf(GUEST_RAM), "guest RAM unmapped by the backend");
            }
        });
    }
}
