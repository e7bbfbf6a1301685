package io.jvhost.core.runtime;

import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.protocol.Header;
import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.testkit.Payloads.NOFD;
import static io.jvhost.testkit.Payloads.NONE;
import static io.jvhost.testkit.Payloads.config;
import static io.jvhost.testkit.Payloads.configRead;
import static io.jvhost.testkit.Payloads.memReg;
import static io.jvhost.testkit.Payloads.memTable;
import static io.jvhost.testkit.Payloads.u64;
import static io.jvhost.testkit.Payloads.vringAddr;
import static io.jvhost.testkit.Payloads.vringState;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.OpenFds.Probe;
import io.jvhost.testkit.Payloads.Region;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Every validation rule of the backend, each with adversarial input: wrong sizes, wrong fd counts,
 * indices, sizes and addresses out of range, memory regions that wrap or reach past their file,
 * rings outside guest memory. A refused request is answered with a non-zero ack (or, for a request
 * whose reply is a payload, the connection is dropped), every fd that came with it is closed, and
 * the backend keeps serving.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class MessageValidationTest {
    static final int QUEUES = 2;
    static final int MAX_QUEUE_SIZE = 256;
    static final long FILE_SIZE = 1 << 16;

    private TestDevice device;
    private BackendFixture fx;

    @BeforeEach
    void startBackend() throws IOException {
        device = TestDevice.withQueues(QUEUES).maxQueueSize(MAX_QUEUE_SIZE).build();
        fx = BackendFixture.start(device);
    }

    @AfterEach
    void stopBackend() throws IOException {
        fx.close();
    }

    private static Fd[] copies(Probe p, int n) {
        Fd[] fds = new Fd[n];
        Arrays.fill(fds, p.fd());
        return fds;
    }

    /** Sends {@code request} with NEED_REPLY and {@code fdCount} copies of a probe; expects a refusal and every copy closed. */
    private void assertRefused(Frontend f, int request, byte[] payload, int fdCount) throws IOException {
        try (Probe p = OpenFds.probe()) {
            assertNotEquals(0, f.requestWithAck(request, payload, copies(p, fdCount)), MessageType.name(request) + " accepted");
            assertEquals(1, p.openCopies(), "every fd that came with the refused " + MessageType.name(request) + " closed");
            assertEquals(0, p.mappings());
        }
    }

    private void assertServing(Frontend f) throws IOException {
        assertEquals(QUEUES, f.getQueueNum(), "connection still served");
    }

    /** Sends a request whose reply is a payload, malformed: the backend must drop the connection. */
    private void assertDropped(Frontend f, int request, byte[] payload, int fdCount) throws IOException {
        try (Probe p = OpenFds.probe()) {
            f.send(request, Header.VERSION, payload, copies(p, fdCount));
            assertTrue(f.isClosedByBackend(5000), MessageType.name(request) + " malformed: connection dropped");
            fx.awaitSessionsEnded();
            assertEquals(1, p.openCopies(), "fds of the dropped message closed");
        }
    }

    // ---- payload sizes -------------------------------------------------------------------------

    /** Requests without a payload reply: request, the size they must have, the fds they carry. */
    static Stream<Arguments> fixedSizeRequests() {
        return Stream.of(
                Arguments.of(SET_FEATURES, 8, 0), Arguments.of(SET_OWNER, 0, 0), Arguments.of(RESET_OWNER, 0, 0),
                Arguments.of(RESET_DEVICE, 0, 0), Arguments.of(SET_PROTOCOL_FEATURES, 8, 0),
                Arguments.of(SET_VRING_NUM, 8, 0), Arguments.of(SET_VRING_ADDR, 40, 0), Arguments.of(SET_VRING_BASE, 8, 0),
                Arguments.of(SET_VRING_KICK, 8, 1), Arguments.of(SET_VRING_CALL, 8, 1), Arguments.of(SET_VRING_ERR, 8, 1),
                Arguments.of(SET_VRING_ENABLE, 8, 0), Arguments.of(SET_STATUS, 8, 0), Arguments.of(NET_SET_MTU, 8, 0),
                Arguments.of(SEND_RARP, 8, 0), Arguments.of(ADD_MEM_REG, 40, 1), Arguments.of(REM_MEM_REG, 40, 0),
                Arguments.of(SET_BACKEND_REQ_FD, 0, 1));
    }

    @ParameterizedTest
    @MethodSource("fixedSizeRequests")
    void shouldRefuseARequestWithAPayloadOfTheWrongSize(int request, int size, int fds) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            List<Integer> wrong = new ArrayList<>(List.of(size + 1, size + 7, Header.MAX_PAYLOAD));
            if (size > 0) {
                wrong.addAll(List.of(0, size - 1));
            }
            for (int n : wrong) {
                assertRefused(f, request, new byte[n], fds);
            }
            assertServing(f);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, GET_STATUS})
    void shouldDropTheConnectionOnAGetRequestWithAPayload(int request) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertDropped(f, request, new byte[8], 0);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {GET_FEATURES, GET_QUEUE_NUM, GET_STATUS})
    void shouldDropTheConnectionOnAGetRequestWithAnFdAndCloseIt(int request) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertDropped(f, request, NONE, 1);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 4, 7, 9, 16})
    void shouldDropTheConnectionOnAGetVringBaseOfTheWrongSize(int size) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertDropped(f, GET_VRING_BASE, new byte[size], 0);
        }
    }

    @Test
    void shouldRefuseAMemoryTableWhosePayloadDoesNotHoldItsRegions() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertRefused(f, SET_MEM_TABLE, new byte[4], 0);
            Region r = new Region(0, FILE_SIZE, 0x7000_0000L, 0);
            assertRefused(f, SET_MEM_TABLE, Arrays.copyOf(memTable(r, r), 8 + 32 + 31), 2);
            assertRefused(f, SET_MEM_TABLE, memTable(2, r), 2);
            assertRefused(f, SET_MEM_TABLE, new byte[8 + 32 * 8 + 1], 0);
            assertServing(f);
        }
    }

    // ---- fd counts -----------------------------------------------------------------------------

    static Stream<Arguments> wrongFdCounts() {
        Region r = new Region(0, FILE_SIZE, 0x7000_0000L, 0);
        Region r2 = new Region(FILE_SIZE, FILE_SIZE, 0x7100_0000L, 0);
        return Stream.of(
                Arguments.of("SET_OWNER with an fd", SET_OWNER, NONE, 1),
                Arguments.of("SET_FEATURES with an fd", SET_FEATURES, u64(0), 1),
                Arguments.of("SET_PROTOCOL_FEATURES with 8 fds", SET_PROTOCOL_FEATURES, u64(0), 8),
                Arguments.of("SET_VRING_NUM with 2 fds", SET_VRING_NUM, vringState(0, 64), 2),
                Arguments.of("SET_VRING_KICK without fd or NOFD", SET_VRING_KICK, u64(0), 0),
                Arguments.of("SET_VRING_KICK with 2 fds", SET_VRING_KICK, u64(0), 2),
                Arguments.of("SET_VRING_CALL with NOFD and an fd", SET_VRING_CALL, u64(NOFD), 1),
                Arguments.of("SET_VRING_ERR with 3 fds", SET_VRING_ERR, u64(1), 3),
                Arguments.of("ADD_MEM_REG without fd", ADD_MEM_REG, memReg(r), 0),
                Arguments.of("ADD_MEM_REG with 2 fds", ADD_MEM_REG, memReg(r), 2),
                Arguments.of("REM_MEM_REG with 2 fds", REM_MEM_REG, memReg(r), 2),
                Arguments.of("SET_MEM_TABLE of 1 region with 2 fds", SET_MEM_TABLE, memTable(r), 2),
                Arguments.of("SET_MEM_TABLE of 1 region without fd", SET_MEM_TABLE, memTable(r), 0),
                Arguments.of("SET_MEM_TABLE of 2 regions with 1 fd", SET_MEM_TABLE, memTable(r, r2), 1),
                Arguments.of("SET_BACKEND_REQ_FD without fd", SET_BACKEND_REQ_FD, NONE, 0),
                Arguments.of("SET_BACKEND_REQ_FD with 2 fds", SET_BACKEND_REQ_FD, NONE, 2),
                Arguments.of("SET_CONFIG with an fd", SET_CONFIG, config(0, 1, 0, new byte[1]), 1),
                Arguments.of("SET_STATUS with an fd", SET_STATUS, u64(1), 1),
                Arguments.of("SET_VRING_ENABLE with an fd", SET_VRING_ENABLE, vringState(0, 1), 1));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("wrongFdCounts")
    void shouldRefuseAWrongNumberOfFdsAndCloseAllOfThem(String name, int request, byte[] payload, int fds) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertRefused(f, request, payload, fds);
            assertServing(f);
        }
    }

    @Test
    void shouldCloseExtraFdsSoTheOpenFdCountStaysPut() throws IOException {
        try (Frontend f = fx.connectWithAcks(); Fd e = EventFd.create()) {
            assertNotEquals(0, f.requestWithAck(SET_OWNER, NONE, e, e, e)); // every code path run once before counting
            assertNotEquals(0, f.requestWithAck(SET_VRING_KICK, u64(0), e, e));
            int before = OpenFds.count();
            for (int i = 0; i < 20; i++) {
                assertNotEquals(0, f.requestWithAck(SET_OWNER, NONE, e, e, e));
                assertNotEquals(0, f.requestWithAck(SET_VRING_KICK, u64(0), e, e));
            }
            assertEquals(before, OpenFds.count(), "no fd kept from 40 refused messages");
        }
    }

    @Test
    void shouldDropTheConnectionOnAGetConfigWithAnFd() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertDropped(f, GET_CONFIG, configRead(0, 4), 1);
        }
    }

    // ---- vring index, size, addresses, base ----------------------------------------------------

    @ParameterizedTest
    @ValueSource(ints = {QUEUES, 3, 255, 256, 0x10000, Integer.MAX_VALUE, -1})
    void shouldRefuseAVringIndexOutOfRange(int index) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertRefused(f, SET_VRING_NUM, vringState(index, 64), 0);
            assertRefused(f, SET_VRING_BASE, vringState(index, 0), 0);
            assertRefused(f, SET_VRING_ENABLE, vringState(index, 1), 0);
            assertRefused(f, SET_VRING_ADDR, vringAddr(index, 0, 0x1000, 0x2000, 0x3000, 0), 0);
            assertServing(f);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {QUEUES, 3, 0xFF})
    void shouldRefuseAKickCallOrErrForAVringIndexOutOfRange(int index) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            for (int request : new int[] {SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR}) {
                assertRefused(f, request, u64(index), 1);
                assertRefused(f, request, u64(index | NOFD), 0);
            }
            assertServing(f);
        }
    }

    @ParameterizedTest
    @ValueSource(longs = {0x200, 0x400, 1L << 32, 1L << 40, Long.MIN_VALUE})
    void shouldRefuseAKickCallOrErrWithUnknownBits(long bits) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            for (int request : new int[] {SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR}) {
                assertRefused(f, request, u64(bits), 1);
                assertRefused(f, request, u64(bits | NOFD), 0);
            }
            assertServing(f);
        }
    }

    @Test
    void shouldDropTheConnectionOnGetVringBaseForAVringIndexOutOfRange() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertDropped(f, GET_VRING_BASE, vringState(QUEUES, 0), 0);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 3, 6, 100, 255, 2 * MAX_QUEUE_SIZE, 32768, 65536, 0x4000_0000, Integer.MIN_VALUE, -1})
    void shouldRefuseAQueueSizeThatIsNotAPowerOfTwoUpToTheDeviceMaximum(int size) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertRefused(f, SET_VRING_NUM, vringState(0, size), 0);
            assertServing(f);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 2, 64, MAX_QUEUE_SIZE})
    void shouldAcceptAPowerOfTwoQueueSizeUpToTheDeviceMaximum(int size) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertEquals(0, f.requestWithAck(SET_VRING_NUM, vringState(1, size)));
        }
    }

    static Stream<Arguments> misalignedRings() {
        return Stream.of(
                Arguments.of("desc 8-aligned", 0x1008L, 0x2000L, 0x3000L),
                Arguments.of("desc 2-aligned", 0x1002L, 0x2000L, 0x3000L),
                Arguments.of("avail odd", 0x1000L, 0x2000L, 0x3001L),
                Arguments.of("used 2-aligned", 0x1000L, 0x2002L, 0x3000L),
                Arguments.of("used odd", 0x1000L, 0x2001L, 0x3000L),
                Arguments.of("all odd", 0x1001L, 0x2001L, 0x3001L));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("misalignedRings")
    void shouldRefuseMisalignedRingAddresses(String name, long desc, long used, long avail) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertRefused(f, SET_VRING_ADDR, vringAddr(0, 0, desc, used, avail, 0), 0);
            assertEquals(0, f.requestWithAck(SET_VRING_ADDR, vringAddr(0, 0, 0x1000, 0x2004, 0x3002, 0)),
                    "desc 16, used 4, avail 2 are enough");
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 4, 0x100, 0x8000_0000, -1})
    void shouldRefuseUnknownVringAddressFlags(int flags) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertRefused(f, SET_VRING_ADDR, vringAddr(0, flags, 0x1000, 0x2000, 0x3000, 0), 0);
            assertEquals(0, f.requestWithAck(SET_VRING_ADDR, vringAddr(0, 1, 0x1000, 0x2000, 0x3000, 0x4000)),
                    "VHOST_VRING_F_LOG is known");
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0x1_0000, 0x1_FFFF, 0x7FFF_FFFF, -1})
    void shouldRefuseASplitRingBaseBeyond16Bits(int base) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertRefused(f, SET_VRING_BASE, vringState(0, base), 0);
            assertEquals(0, f.getVringBase(0), "base unchanged");
        }
    }

    // ---- memory regions ------------------------------------------------------------------------

    static Stream<Arguments> badRegions() {
        long hva = 0x7000_0000L;
        return Stream.of(
                Arguments.of("of size 0", new Region(0, 0, hva, 0)),
                Arguments.of("of size 2^63", new Region(0, Long.MIN_VALUE, hva, 0)),
                Arguments.of("of size 2^64 - 1", new Region(0, -1, hva, 0)),
                Arguments.of("whose guest range wraps past 2^64", new Region(-0x1000, 0x2000, hva, 0)),
                Arguments.of("whose guest range ends exactly at 2^64 + 1", new Region(-0x1000, 0x1001, hva, 0)),
                Arguments.of("whose frontend range wraps past 2^64", new Region(0, 0x2000, -0x1000, 0)),
                Arguments.of("with a negative file offset", new Region(0, 0x1000, hva, -0x1000)),
                Arguments.of("whose file range overflows", new Region(0, 0x2000, hva, Long.MAX_VALUE - 0xFFF)),
                Arguments.of("that extends past its file", new Region(0, FILE_SIZE + 0x1000, hva, 0)),
                Arguments.of("that starts inside its file and ends past it", new Region(0, FILE_SIZE, hva, 0x1000)),
                Arguments.of("that starts at the end of its file", new Region(0, 0x1000, hva, FILE_SIZE)),
                Arguments.of("that starts far past its file", new Region(0, 0x1000, hva, 1L << 40)));
    }

    @ParameterizedTest(name = "SET_MEM_TABLE: a region {0}")
    @MethodSource("badRegions")
    void shouldRefuseAMemoryTableWithABadRegionWithoutMappingIt(String name, Region bad) throws IOException {
        try (Probe file = OpenFds.probe(FILE_SIZE); Frontend f = fx.connectWithAcks()) {
            assertNotEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(bad), file.fd()));
            assertEquals(0, file.mappings(), "not mapped: touching it would raise SIGBUS");
            assertEquals(1, file.openCopies(), "fd closed");
            Region good = new Region(0, FILE_SIZE, 0x7000_0000L, 0);
            assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(good), file.fd()), "the same file is fine");
            assertEquals(1, file.mappings());
        }
    }

    @ParameterizedTest(name = "ADD_MEM_REG: a region {0}")
    @MethodSource("badRegions")
    void shouldRefuseToAddABadRegionWithoutMappingIt(String name, Region bad) throws IOException {
        try (Probe file = OpenFds.probe(FILE_SIZE); Frontend f = fx.connectWithAcks()) {
            assertNotEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(bad), file.fd()));
            assertEquals(0, file.mappings(), "not mapped: touching it would raise SIGBUS");
            assertEquals(1, file.openCopies(), "fd closed");
            assertServing(f);
        }
    }

    @Test
    void shouldAcceptARegionThatEndsExactlyAt2To64() throws IOException {
        try (Probe file = OpenFds.probe(FILE_SIZE); Frontend f = fx.connectWithAcks()) {
            assertEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(new Region(-FILE_SIZE, FILE_SIZE, -FILE_SIZE, 0)), file.fd()));
            assertEquals(1, file.mappings());
        }
    }

    @Test
    void shouldRefuseARegionBackedByAnFdWithoutData() throws IOException {
        try (Fd e = EventFd.create(); Frontend f = fx.connectWithAcks()) {
            assertNotEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(new Region(0, 0x1000, 0x7000_0000L, 0)), e));
            assertServing(f);
        }
    }

    @Test
    void shouldKeepTheOldTableWhenANewOneIsRefused() throws IOException {
        try (Probe old = OpenFds.probe(FILE_SIZE); Probe file = OpenFds.probe(FILE_SIZE); Frontend f = fx.connectWithAcks()) {
            Region good = new Region(0, FILE_SIZE, 0x7000_0000L, 0);
            assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(good), old.fd()));
            Region tooBig = new Region(FILE_SIZE, 2 * FILE_SIZE, 0x7100_0000L, 0);
            assertNotEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(good, tooBig), file.fd(), file.fd()));
            assertEquals(1, old.mappings(), "old table still mapped");
            assertEquals(0, file.mappings(), "nothing of the refused table stays mapped");
        }
    }

    private static Region[] regions(int n) {
        Region[] r = new Region[n];
        for (int i = 0; i < n; i++) {
            r[i] = new Region(0x10_0000L * i, 0x1000, 0x7000_0000L + 0x10_0000L * i, 0x1000L * i);
        }
        return r;
    }

    @Test
    void shouldAcceptAMemoryTableOfEightRegions() throws IOException {
        try (Probe file = OpenFds.probe(8 * 0x1000); Frontend f = fx.connectWithAcks()) {
            assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(regions(8)), copies(file, 8)));
            assertEquals(8, file.mappings());
            assertEquals(1, file.openCopies());
        }
    }

    @Test
    void shouldRefuseAMemoryTableOfMoreThanEightRegions() throws IOException {
        try (Probe file = OpenFds.probe(9 * 0x1000); Frontend f = fx.connectWithAcks()) {
            assertNotEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(regions(9)), copies(file, 8)));
            assertNotEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(regions(9))));
            assertEquals(0, file.mappings());
            assertEquals(1, file.openCopies());
            assertServing(f);
        }
    }

    @Test
    void shouldDropTheConnectionOnNineFdsAndCloseThemAll() throws IOException {
        try (Probe file = OpenFds.probe(9 * 0x1000); Frontend f = fx.connectWithAcks()) {
            f.send(SET_MEM_TABLE, Header.VERSION | Header.NEED_REPLY, memTable(regions(9)), copies(file, 9));
            assertTrue(f.isClosedByBackend(5000));
            fx.awaitSessionsEnded();
            assertEquals(0, file.mappings());
            assertEquals(1, file.openCopies());
        }
    }

    @Test
    void shouldRefuseOverlappingRegionsInOneTableButMapIdenticalDuplicatesOnce() throws IOException {
        try (Probe file = OpenFds.probe(2 * FILE_SIZE); Frontend f = fx.connectWithAcks()) {
            Region a = new Region(0, FILE_SIZE, 0x7000_0000L, 0);
            Region overlapping = new Region(FILE_SIZE / 2, FILE_SIZE, 0x7100_0000L, FILE_SIZE);
            assertNotEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(a, overlapping), file.fd(), file.fd()));
            assertEquals(0, file.mappings());
            assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(a, a), file.fd(), file.fd()));
            assertEquals(1, file.mappings());
            assertEquals(1, file.openCopies());
        }
    }

    // ---- rings outside guest memory ------------------------------------------------------------

    /** Ring placements that fail translation, given the real queue {@code q}. */
    static Stream<Arguments> ringsOutsideMemory() {
        long end = GuestRam.hva(1 << 20);
        return Stream.of(
                Arguments.of("descriptor table unmapped", (Function<DriverQueue, long[]>) q ->
                        new long[] {end + 0x1000, q.usedHva(), q.availHva()}),
                Arguments.of("avail ring unmapped", (Function<DriverQueue, long[]>) q ->
                        new long[] {q.descHva(), q.usedHva(), end + 0x1000}),
                Arguments.of("used ring crossing the end of memory", (Function<DriverQueue, long[]>) q ->
                        new long[] {q.descHva(), end - 8, q.availHva()}),
                Arguments.of("descriptor table crossing the end of memory", (Function<DriverQueue, long[]>) q ->
                        new long[] {end - 16, q.usedHva(), q.availHva()}),
                Arguments.of("guest-physical instead of frontend addresses", (Function<DriverQueue, long[]>) q ->
                        new long[] {q.descHva() - GuestRam.HVA_BASE, q.usedHva() - GuestRam.HVA_BASE,
                            q.availHva() - GuestRam.HVA_BASE}),
                Arguments.of("rings near 2^64", (Function<DriverQueue, long[]>) q ->
                        new long[] {-0x1000, -0x800, -0x400}));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("ringsOutsideMemory")
    void shouldNotStartAQueueWhoseRingsAreOutsideGuestMemoryAndSignalItsErrFd(String name,
            Function<DriverQueue, long[]> placement) throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Fd err = EventFd.create(); Frontend f = fx.connectWithAcks()) {
            long features = f.handshakeLikeQemu(QUEUES);
            assertEquals(0, f.setFeatures(features));
            assertEquals(0, f.setMemTable(ram));
            assertEquals(0, f.setVringErr(0, err));
            assertEquals(0, f.setVringNum(0, 64));
            long[] rings = placement.apply(q);
            assertEquals(0, f.setVringAddr(0, 0, rings[0], rings[1], rings[2]), "alignment is all SET_VRING_ADDR checks");
            assertStartRefused(f, q, err);

            assertEquals(0, f.setVringAddr(q), "proper rings");
            assertEquals(1, device.started(0));
            Traffic.echo(q, 2, 0);
        }
    }

    /** Calls, enables and kicks queue 0 as QEMU does; it must not start: its err eventfd written, the connection still served. */
    private void assertStartRefused(Frontend f, DriverQueue q, Fd err) throws IOException {
        assertEquals(0, f.setVringCall(0, q.callFd()));
        assertEquals(0, f.setVringEnable(0, true));
        assertEquals(0, f.setVringKick(0, q.kickFd()));
        assertEquals(0, device.started(0), "queue not started");
        assertTrue(LibC.eventfdDrain(err.get()) > 0, "err eventfd signalled");
        assertServing(f);
    }

    /**
     * A region whose frontend address and mmap offset disagree modulo 16 shifts every ring in it
     * off the alignment the frontend gave it (checked on SET_VRING_ADDR) in the backend's own
     * mapping, where the ring is read with aligned atomic accesses: the queue must not start.
     */
    @ParameterizedTest(name = "region address off by {0}")
    @ValueSource(longs = {1, 2, 4, 8})
    void shouldNotStartAQueueWhoseRingsAreMisalignedInTheBackendsMappingOfARegion(long skew) throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Fd err = EventFd.create(); Frontend f = fx.connectWithAcks()) {
            long features = f.handshakeLikeQemu(QUEUES);
            assertEquals(0, f.setFeatures(features));
            Region skewed = new Region(0, ram.size(), GuestRam.HVA_BASE + skew, 0);
            assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(skewed), ram.fd()), "a region may be anywhere");
            assertEquals(0, f.setVringErr(0, err));
            assertEquals(0, f.setVringNum(0, 64));
            assertEquals(0, f.setVringAddr(q), "the addresses themselves are aligned");
            assertStartRefused(f, q, err);
            assertEquals(0, fx.backend().pollerFailures(), "no exception on a poller");
        }
    }

    // ---- status and config ranges --------------------------------------------------------------

    @ParameterizedTest
    @ValueSource(longs = {0x100, 0x1FF, 1L << 32, -1})
    void shouldRefuseAStatusThatIsNotAByte(long status) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertRefused(f, SET_STATUS, u64(status), 0);
            assertEquals(0, f.getStatus());
        }
    }

    static Stream<Arguments> badConfigWrites() {
        return Stream.of(
                Arguments.of("offset 256 size 1", config(256, 1, 0, new byte[1])),
                Arguments.of("size 257", config(0, 257, 0, new byte[257])),
                Arguments.of("offset 255 size 2", config(255, 2, 0, new byte[2])),
                Arguments.of("offset 2^32 - 1 size 2 (32-bit wrap)", config(-1, 2, 0, new byte[2])),
                Arguments.of("size 2^32 - 1", config(0, -1, 0, new byte[4])),
                Arguments.of("size field 4, 2 data bytes", config(0, 4, 0, new byte[2])),
                Arguments.of("size field 1, 2 data bytes", config(0, 1, 0, new byte[2])),
                Arguments.of("header cut short", new byte[11]));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badConfigWrites")
    void shouldRefuseAConfigWriteOutOfRangeOrOfTheWrongSize(String name, byte[] payload) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            byte[] before = f.getConfig(0, 16);
            assertRefused(f, SET_CONFIG, payload, 0);
            assertEquals(Arrays.toString(before), Arrays.toString(f.getConfig(0, 16)), "config unchanged");
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badConfigWrites")
    void shouldDropTheConnectionOnAConfigReadOutOfRangeOrOfTheWrongSize(String name, byte[] payload) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertDropped(f, GET_CONFIG, payload, 0);
        }
    }
}
