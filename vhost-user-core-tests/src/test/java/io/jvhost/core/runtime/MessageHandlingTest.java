package io.jvhost.core.runtime;

import io.jvhost.core.protocol.Header;
import io.jvhost.core.device.ProtocolFeatures;
import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.testkit.Payloads.NONE;
import static io.jvhost.testkit.Payloads.config;
import static io.jvhost.testkit.Payloads.memReg;
import static io.jvhost.testkit.Payloads.memTable;
import static io.jvhost.testkit.Payloads.u64;
import static io.jvhost.testkit.Payloads.vringState;
import static io.jvhost.core.device.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.Frontend.Reply;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.UnixSockets;
import io.jvhost.testkit.Await;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.OpenFds.Probe;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.Payloads.Region;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.core.device.VirtioFeatures;

import java.io.IOException;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Every request the backend handles, one at a time, against a real backend over a real Unix
 * socket: what it answers, what state it keeps, which fds it keeps and which it closes.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class MessageHandlingTest {
    static final long FRAMEWORK_FEATURES = bit(VirtioFeatures.VERSION_1) | bit(VirtioFeatures.RING_EVENT_IDX)
            | bit(VirtioFeatures.RING_INDIRECT_DESC) | bit(VirtioFeatures.PROTOCOL_FEATURES) | bit(VirtioFeatures.LOG_ALL)
            | bit(VirtioFeatures.RING_PACKED) | bit(VirtioFeatures.IN_ORDER);
    static final String EVENTFD = OpenFds.EVENTFD;

    private TestDevice device;
    private BackendFixture fx;

    @BeforeEach
    void startBackend() throws IOException {
        device = TestDevice.withQueues(2).build();
        fx = BackendFixture.start(device);
    }

    @AfterEach
    void stopBackend() throws IOException {
        fx.close();
    }

    private static long pf(int bit) {
        return ProtocolFeatures.bit(bit);
    }

    /** Handshake with every offered protocol feature (REPLY_ACK among them), then start {@code queues}. */
    private long start(Frontend f, GuestRam ram, DriverQueue... queues) throws IOException {
        long features = f.handshakeLikeQemu(device.queueCount());
        f.startLikeQemu(features, ram, queues);
        return features;
    }

    /** Waits until exactly {@code n} eventfds are open in the process. */
    private static void awaitEventFds(long n, String what) {
        Await.until(() -> what + ": " + n + " eventfds open, not " + OpenFds.countLinksTo(EVENTFD),
                () -> OpenFds.countLinksTo(EVENTFD) == n, Await.DEFAULT);
    }

    /** Configures and enables one ring with the given kick and call fds (null: NOFD). REPLY_ACK must be on. */
    private static void configureRing(Frontend f, DriverQueue q, Fd kick, Fd call) throws IOException {
        assertEquals(0, f.setVringNum(q.index(), q.size()));
        assertEquals(0, f.setVringBase(q.index(), 0));
        assertEquals(0, f.setVringAddr(q));
        assertEquals(0, f.setVringCall(q.index(), call));
        assertEquals(0, f.setVringKick(q.index(), kick));
        assertEquals(0, f.setVringEnable(q.index(), true));
    }

    // ---- features ------------------------------------------------------------------------------

    @Test
    void shouldOfferTheDeviceFeaturesAndWhatTheFrameworkImplements() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            Reply r = f.call(GET_FEATURES, NONE);
            assertEquals(Header.VERSION | Header.REPLY, r.flags());
            assertEquals(8, r.payload().length);
            assertEquals(TestDevice.DEVICE_FEATURE | FRAMEWORK_FEATURES, r.u64());
        }
    }

    @Test
    void shouldAcceptAnySubsetOfTheOfferedFeaturesAndTellTheDevice() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            long subset = TestDevice.DEVICE_FEATURE | bit(VirtioFeatures.VERSION_1);
            assertEquals(0, f.requestWithAck(SET_FEATURES, u64(subset)));
            assertEquals(subset, device.featuresAcked());
            assertEquals(0, f.requestWithAck(SET_FEATURES, u64(0)));
            assertEquals(0, device.featuresAcked());
            assertEquals(0, f.requestWithAck(SET_FEATURES, u64(f.getFeatures())));
            assertEquals(TestDevice.DEVICE_FEATURE | FRAMEWORK_FEATURES, device.featuresAcked());
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 4, VirtioFeatures.NOTIFY_ON_EMPTY, VirtioFeatures.ACCESS_PLATFORM, VirtioFeatures.ORDER_PLATFORM, 63})
    void shouldRefuseFeatureBitsThatWereNotOffered(int notOffered) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            long offered = f.getFeatures();
            assertNotEquals(0, f.requestWithAck(SET_FEATURES, u64(offered | bit(notOffered))));
            assertEquals(-1, device.featuresAcked(), "the device heard of features the backend refused");
        }
    }

    @Test
    void shouldOfferTheDefaultProtocolFeaturesAndNeverInbandNotifications() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            long offered = f.getProtocolFeatures();
            for (int b : new int[] {ProtocolFeatures.MQ, ProtocolFeatures.REPLY_ACK, ProtocolFeatures.CONFIG,
                ProtocolFeatures.BACKEND_REQ, ProtocolFeatures.CONFIGURE_MEM_SLOTS, ProtocolFeatures.STATUS,
                ProtocolFeatures.LOG_SHMFD}) {
                assertTrue((offered & pf(b)) != 0, "protocol feature " + b + " offered");
            }
            assertEquals(0, offered & pf(ProtocolFeatures.INBAND_NOTIFICATIONS));
            assertEquals(FeaturePolicy.PROTOCOL_FEATURES, offered, "nothing the framework does not implement");
        }
    }

    @Test
    void shouldNeverOfferInbandNotificationsEvenWhenTheDeviceAsksForThem() throws IOException {
        TestDevice asking = TestDevice.withQueues(1)
                .protocolFeatures(pf(ProtocolFeatures.INBAND_NOTIFICATIONS) | pf(ProtocolFeatures.MTU)).build();
        try (BackendFixture other = BackendFixture.start(asking); Frontend f = other.connectWithAcks()) {
            assertEquals(FeaturePolicy.PROTOCOL_FEATURES | pf(ProtocolFeatures.MTU), f.getProtocolFeatures());
            assertNotEquals(0, f.requestWithAck(SET_PROTOCOL_FEATURES, u64(pf(ProtocolFeatures.INBAND_NOTIFICATIONS))));
        }
    }

    @Test
    void shouldAcceptEveryOfferedProtocolFeature() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertEquals(0, f.requestWithAck(SET_PROTOCOL_FEATURES, u64(f.getProtocolFeatures())));
            // Accepting none turns REPLY_ACK off, so no ack comes; a refusal would have been acked.
            f.send(SET_PROTOCOL_FEATURES, Header.VERSION | Header.NEED_REPLY, u64(0));
            assertEquals(2, f.getQueueNum(), "no protocol feature accepted: nothing acked");
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {ProtocolFeatures.RARP, ProtocolFeatures.MTU,
        ProtocolFeatures.INFLIGHT_SHMFD, ProtocolFeatures.INBAND_NOTIFICATIONS, 17, 63})
    void shouldRefuseProtocolFeaturesThatWereNotOffered(int notOffered) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            long offered = f.getProtocolFeatures();
            assertNotEquals(0, f.requestWithAck(SET_PROTOCOL_FEATURES, u64(offered | pf(notOffered))));
        }
    }

    // ---- owner and reset -----------------------------------------------------------------------

    @Test
    void shouldAcceptSetOwner() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertEquals(0, f.requestWithAck(SET_OWNER, NONE));
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {RESET_OWNER, RESET_DEVICE})
    void shouldStopQueuesCloseTheirFdsAndResetTheDeviceOnReset(int request) throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Fd err = EventFd.create(); Frontend f = fx.connectWithAcks()) {
            long features = f.handshakeLikeQemu(2);
            assertEquals(0, f.setVringErr(0, err));
            f.startLikeQemu(features, ram, q);
            Traffic.echo(q, 1, 0);
            long eventFds = OpenFds.countLinksTo(EVENTFD);

            assertEquals(0, f.requestWithAck(request, NONE));

            assertEquals(1, device.stopped(0));
            assertEquals(1, device.resets());
            awaitEventFds(eventFds - 3, "kick, call and err fds closed");
            assertEquals(0, f.getVringBase(0), "ring state forgotten: base back to 0");

            // The driver starts over on fresh rings; the device works as new.
            try (DriverQueue fresh = new DriverQueue(ram, 0, 64)) {
                f.startLikeQemu(features, ram, fresh);
                Traffic.echo(fresh, 2, 10);
            }
        }
    }

    // ---- memory table --------------------------------------------------------------------------

    @Test
    void shouldMapANewMemoryTableAndUnmapTheOldOne() throws IOException {
        try (Probe a = OpenFds.probe(1 << 16); Probe b = OpenFds.probe(1 << 16); Frontend f = fx.connectWithAcks()) {
            Region region = new Region(0, 1 << 16, 0x7000_0000L, 0);
            assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(region), a.fd()));
            assertEquals(1, a.mappings(), "region mapped");
            assertEquals(1, a.openCopies(), "the backend keeps the mapping, not the fd");

            assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(region), b.fd()));
            assertEquals(0, a.mappings(), "old table unmapped");
            assertEquals(1, b.mappings());

            assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable()));
            assertEquals(0, b.mappings(), "an empty table unmaps everything");
        }
    }

    @Test
    void shouldKeepOneFdPerMappedRegionForALiveUpgradeOnlyWhenAskedAndCloseItWithTheMapping() throws IOException {
        fx.backend().keepFdsForHandover();
        try (Probe a = OpenFds.probe(1 << 16); Probe b = OpenFds.probe(1 << 16)) {
            try (Frontend f = fx.connectWithAcks()) {
                Region region = new Region(0, 1 << 16, 0x7000_0000L, 0);
                assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(region), a.fd()));
                assertEquals(2, a.openCopies(), "ours and one the backend keeps for a successor");
                assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(region), b.fd()));
                assertEquals(1, a.openCopies(), "the old table's fd goes with its mapping");
                assertEquals(2, b.openCopies());
            }
            fx.awaitSessionsEnded();
            assertEquals(0, b.mappings());
            assertEquals(1, b.openCopies(), "and at disconnect");
        }
    }

    @Test
    void shouldUnmapGuestMemoryWhenTheFrontendGoesAway() throws IOException {
        try (Probe a = OpenFds.probe(1 << 16)) {
            try (Frontend f = fx.connectWithAcks()) {
                assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(new Region(0, 1 << 16, 0x7000_0000L, 0)), a.fd()));
                assertEquals(1, a.mappings());
            }
            fx.awaitSessionsEnded();
            assertEquals(0, a.mappings());
        }
    }

    @Test
    void shouldReport509MemorySlots() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertEquals(509, f.getMaxMemSlots());
        }
    }

    @Test
    void shouldCountReferencesOfIdenticalDuplicateRegions() throws IOException {
        try (Probe a = OpenFds.probe(1 << 16); Frontend f = fx.connectWithAcks()) {
            Region r = new Region(0x10_0000, 1 << 16, 0x7000_0000L, 0);
            assertEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(r), a.fd()));
            assertEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(r), a.fd()), "identical duplicate tolerated");
            assertEquals(1, a.mappings(), "mapped once");
            assertEquals(1, a.openCopies(), "neither received fd kept");

            assertEquals(0, f.requestWithAck(REM_MEM_REG, memReg(r)));
            assertEquals(1, a.mappings(), "one reference left");
            assertEquals(0, f.requestWithAck(REM_MEM_REG, memReg(r), a.fd()), "QEMU sends the fd along");
            assertEquals(0, a.mappings(), "last reference gone");
            assertEquals(1, a.openCopies());
            assertNotEquals(0, f.requestWithAck(REM_MEM_REG, memReg(r)), "nothing left to remove");
        }
    }

    @Test
    void shouldRefuseARegionThatOverlapsAnotherWithoutMappingIt() throws IOException {
        try (Probe a = OpenFds.probe(1 << 16); Probe b = OpenFds.probe(1 << 16); Frontend f = fx.connectWithAcks()) {
            assertEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(new Region(0x10_0000, 1 << 16, 0x7000_0000L, 0)), a.fd()));

            assertNotEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(new Region(0x10_8000, 1 << 16, 0x7100_0000L, 0)), b.fd()));
            assertNotEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(new Region(0x0F_8000, 1 << 16, 0x7100_0000L, 0)), b.fd()));
            assertNotEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(new Region(0x10_0000, 1 << 16, 0x7100_0000L, 0)), b.fd()),
                    "same guest range at another frontend address is no duplicate");
            assertEquals(0, b.mappings());
            assertEquals(1, b.openCopies(), "refused fds closed");

            assertEquals(0, f.requestWithAck(ADD_MEM_REG, memReg(new Region(0x11_0000, 1 << 16, 0x7100_0000L, 0)), b.fd()),
                    "an adjacent region is fine");
            assertEquals(1, b.mappings());
        }
    }

    @Test
    void shouldRefuseLogFdAndCloseItsFdButKeepServing() throws IOException {
        try (Probe log = OpenFds.probe(); Frontend f = fx.connectWithAcks()) {
            assertNotEquals(0, f.requestWithAck(SET_LOG_FD, NONE, log.fd()));
            assertEquals(0, log.mappings(), "nothing mapped");
            assertEquals(1, log.openCopies(), "the received fd closed");
            assertEquals(TestDevice.DEVICE_FEATURE | FRAMEWORK_FEATURES, f.getFeatures(), "connection still served");
        }
    }

    @Test
    void shouldDropTheConnectionOnALogBaseWithoutLogShmfdAndCloseItsFd() throws IOException {
        try (Probe log = OpenFds.probe(); Frontend f = fx.connectWithAcks()) {
            f.send(SET_LOG_BASE, Header.VERSION | Header.NEED_REPLY, Payloads.logBase(4096, 0), log.fd());
            assertTrue(f.isClosedByBackend(BackendFixture.REPLY_TIMEOUT.toMillis()),
                    "SET_LOG_BASE has a reply of its own: a refusal drops the connection");
            fx.awaitSessionsEnded();
            assertEquals(0, log.mappings(), "no dirty log mapped");
            assertEquals(1, log.openCopies(), "the received fd closed");
        }
    }

    // ---- vrings --------------------------------------------------------------------------------

    @Test
    void shouldReportItsQueueCount() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertEquals(2, f.getQueueNum());
        }
    }

    @Test
    void shouldReturnTheBaseSetForAQueueThatNeverRan() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertEquals(0, f.getVringBase(1));
            assertEquals(0, f.requestWithAck(SET_VRING_BASE, vringState(1, 42)));
            assertEquals(42, f.getVringBase(1));
            assertEquals(0, f.requestWithAck(SET_VRING_BASE, vringState(1, 0xFFFF)));
            assertEquals(0xFFFF, f.getVringBase(1));
        }
    }

    /**
     * SPDK's virtio-user frontend (before v24.01) enables a queue with SET_VRING_ENABLE num = its
     * size; libvhost-user and DPDK take any non-zero num as enable, and so does jvhost.
     */
    @ParameterizedTest
    @ValueSource(ints = {1024, 2, -1})
    void shouldTakeAnyNonZeroEnableValueAsEnableAndServeTheQueue(int value) throws IOException {
        TestDevice large = TestDevice.withQueues(2).maxQueueSize(1024).build();
        try (BackendFixture other = BackendFixture.start(large); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, 1024); Frontend f = other.connectWithAcks()) {
            long features = f.handshakeLikeQemu(2);
            assertEquals(0, f.setFeatures(features | bit(VirtioFeatures.PROTOCOL_FEATURES)), "rings start disabled");
            assertEquals(0, f.setMemTable(ram));
            assertEquals(0, f.setVringNum(0, q.size()));
            assertEquals(0, f.setVringBase(0, 0));
            assertEquals(0, f.setVringAddr(q));
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            assertEquals(0, f.setVringCall(0, q.callFd()));
            assertEquals(0, large.started(0), "not enabled yet");

            assertEquals(0, f.requestWithAck(SET_VRING_ENABLE, vringState(0, value)), "enable " + Integer.toUnsignedString(value));
            assertEquals(0, f.setStatus(0x0F));
            Traffic.echo(q, 3, 0);
            assertEquals(1, large.started(0));

            assertEquals(0, f.setVringEnable(0, false));
            assertEquals(1, large.stopped(0), "0 still disables");
        }
    }

    @Test
    void shouldStopTheRingOnGetVringBaseAndContinueWhereItLeftOff() throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connectWithAcks()) {
            start(f, ram, q);
            Traffic.echo(q, 3, 0);

            Reply r = f.call(GET_VRING_BASE, vringState(0, 0));
            assertEquals(0, r.u32(0), "vring index echoed");
            assertEquals(3, r.u32(4), "last avail index");
            assertEquals(1, device.stopped(0));

            Traffic.Request later = Traffic.request(ram, Traffic.pattern(100, 9));
            int head = q.post(later.buffers());
            assertEquals(3, f.getVringBase(0), "a stopped ring takes nothing");

            assertEquals(0, f.setVringKick(0, q.kickFd()), "a new kick fd starts the ring again");
            later.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), head);
            assertEquals(4, device.seenCount(0), "every chain processed exactly once");
            assertEquals(4, f.getVringBase(0));
        }
    }

    @Test
    void shouldKeepRingStateWhenStatusZeroArrivesBeforeGetVringBase() throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connectWithAcks()) {
            start(f, ram, q);
            Traffic.echo(q, 2, 0);
            assertEquals(0, f.setStatus(0));
            assertEquals(2, f.getVringBase(0), "status 0 does not discard the ring");
        }
    }

    @Test
    void shouldPollAQueueWhoseKickHasNoFd() throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connectWithAcks()) {
            long features = f.handshakeLikeQemu(2);
            assertEquals(0, f.setFeatures(features));
            assertEquals(0, f.setMemTable(ram));
            configureRing(f, q, null, q.callFd());
            Traffic.Request r = Traffic.request(ram, Traffic.pattern(32, 1));
            int head = q.chain(r.buffers());
            q.makeAvailable(head); // no kick: nobody would hear it
            r.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), head);
        }
    }

    @Test
    void shouldCompleteBuffersWithoutInterruptsWhenCallHasNoFd() throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connectWithAcks()) {
            long features = f.handshakeLikeQemu(2);
            assertEquals(0, f.setFeatures(features & ~bit(VirtioFeatures.RING_EVENT_IDX)));
            assertEquals(0, f.setMemTable(ram));
            configureRing(f, q, q.kickFd(), null);
            Traffic.echo(q, 3, 0);
            assertEquals(3, f.getVringBase(0));
            assertEquals(0, q.takeInterrupts());
        }
    }

    @Test
    void shouldMoveInterruptsToANewCallFdWhileTheQueueRuns() throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Fd other = EventFd.create(); Frontend f = fx.connectWithAcks()) {
            long features = f.handshakeLikeQemu(2);
            f.startLikeQemu(features & ~bit(VirtioFeatures.RING_EVENT_IDX), ram, q);
            Traffic.echo(q, 1, 0);
            assertEquals(0, f.setVringCall(0, other), "acked once the poller uses the new fd");
            assertEquals(1, q.takeInterrupts());

            Traffic.echo(q, 1, 1);
            f.getVringBase(0); // the poller is done with the queue
            assertEquals(0, q.takeInterrupts(), "old call fd no longer used");
            assertEquals(1, LibC.eventfdDrain(other.get()));
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR})
    void shouldCloseTheEventFdItReplacesAndAcceptNofd(int request) throws IOException {
        try (Fd a = EventFd.create(); Fd b = EventFd.create(); Frontend f = fx.connectWithAcks()) {
            long ours = OpenFds.countLinksTo(EVENTFD);
            assertEquals(0, f.requestWithAck(request, u64(1), a));
            assertEquals(ours + 1, OpenFds.countLinksTo(EVENTFD), "the backend keeps one copy");
            assertEquals(0, f.requestWithAck(request, u64(1), b));
            awaitEventFds(ours + 1, "the replaced fd closed"); // replaced fds may close just after the ack
            assertEquals(0, f.requestWithAck(request, u64(1 | Payloads.NOFD)));
            awaitEventFds(ours, "NOFD drops the last one");
        }
    }

    @Test
    void shouldHoldARingUntilItIsEnabledAndStopItWhenDisabled() throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connectWithAcks()) {
            long features = f.handshakeLikeQemu(2);
            assertEquals(0, f.setFeatures(features)); // PROTOCOL_FEATURES acked: rings start disabled
            assertEquals(0, f.setMemTable(ram));
            assertEquals(0, f.setVringNum(0, 64));
            assertEquals(0, f.setVringAddr(q));
            assertEquals(0, f.setVringCall(0, q.callFd()));
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            Traffic.Request r = Traffic.request(ram, Traffic.pattern(16, 3));
            int head = q.post(r.buffers());
            assertEquals(0, device.started(0), "a disabled ring does not start");
            assertEquals(0, f.getVringBase(0));

            assertEquals(0, f.setVringKick(0, q.kickFd()));
            assertEquals(0, f.setVringEnable(0, true));
            assertEquals(1, device.started(0));
            r.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), head);

            assertEquals(0, f.setVringEnable(0, false));
            assertEquals(1, device.stopped(0));
            q.post(Traffic.request(ram, Traffic.pattern(16, 4)).buffers());
            assertEquals(1, f.getVringBase(0), "a disabled ring takes nothing");
        }
    }

    @Test
    void shouldStartRingsEnabledWhenProtocolFeaturesAreNotAcked() throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connectWithAcks()) {
            long features = f.getFeatures() & ~Frontend.RING_FEATURES; // a split-ring driver
            assertEquals(0, f.requestWithAck(SET_FEATURES, u64(features & ~bit(VirtioFeatures.PROTOCOL_FEATURES))));
            assertEquals(0, f.requestWithAck(SET_OWNER, NONE));
            f.send(SET_VRING_NUM, Header.VERSION, vringState(0, 64));
            f.send(SET_VRING_ADDR, Header.VERSION, Payloads.vringAddr(0, 0, q.descHva(), q.usedHva(), q.availHva(), 0));
            f.send(SET_VRING_CALL, Header.VERSION, u64(0), q.callFd());
            assertEquals(0, f.requestWithAck(SET_MEM_TABLE, memTable(Region.of(ram, 0)), ram.fd()));
            assertEquals(0, f.requestWithAck(SET_VRING_KICK, u64(0), q.kickFd()));
            assertEquals(1, device.started(0), "no SET_VRING_ENABLE needed");
            Traffic.echo(q, 2, 0);
        }
    }

    // ---- backend channel -----------------------------------------------------------------------

    @Test
    void shouldKeepOneBackendChannelAndCloseTheOneItReplaces() throws IOException {
        Fd[] first = UnixSockets.pair();
        Fd[] second = UnixSockets.pair();
        try (Frontend firstPeer = Frontend.over(first[0]); Frontend secondPeer = Frontend.over(second[0])) {
            try (Frontend f = fx.connectWithAcks()) {
                assertEquals(0, f.requestWithAck(SET_BACKEND_REQ_FD, NONE, first[1]));
                first[1].close();
                assertEquals(0, f.requestWithAck(SET_BACKEND_REQ_FD, NONE, second[1]));
                second[1].close();
                assertTrue(firstPeer.isClosedByBackend(5000), "replaced channel closed");
                assertNotEquals(0, f.requestWithAck(SET_BACKEND_REQ_FD, NONE), "a channel needs its fd");
            }
            assertTrue(secondPeer.isClosedByBackend(5000), "channel closed with the session");
        }
    }

    // ---- config space --------------------------------------------------------------------------

    @Test
    void shouldAnswerConfigReadsFromTheDeviceConfig() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertArrayEquals(TestDevice.defaultConfig(16), f.getConfig(0, 16));
            Reply r = f.call(GET_CONFIG, Payloads.config(4, 8, 0, new byte[8]));
            assertEquals(12 + 8, r.payload().length);
            assertEquals(4, r.u32(0), "offset echoed");
            assertEquals(8, r.u32(4), "size echoed");
            assertArrayEquals(Arrays.copyOfRange(TestDevice.defaultConfig(16), 4, 12), Arrays.copyOfRange(r.payload(), 12, 20));
        }
    }

    @Test
    void shouldAnswerReadsOfUpTo256BytesWithZerosPastTheDeviceConfig() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            byte[] all = f.getConfig(0, 256);
            byte[] expected = Arrays.copyOf(TestDevice.defaultConfig(16), 256);
            assertArrayEquals(expected, all);
            assertArrayEquals(Arrays.copyOfRange(expected, 8, 256), f.getConfig(8, 248));
            assertArrayEquals(new byte[56], f.getConfig(200, 56));
            assertArrayEquals(new byte[0], f.getConfig(256, 0));
        }
    }

    @Test
    void shouldWriteConfigThroughTheDeviceAndRefuseWhatItRefuses() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertEquals(0, f.requestWithAck(SET_CONFIG, config(4, 2, 1, new byte[] {9, 8})));
            byte[] expected = TestDevice.defaultConfig(16);
            expected[4] = 9;
            expected[5] = 8;
            assertArrayEquals(expected, f.getConfig(0, 16));

            assertNotEquals(0, f.requestWithAck(SET_CONFIG, config(14, 4, 1, new byte[4])), "past the device's struct");
            assertArrayEquals(expected, f.getConfig(0, 16));
        }
    }

    // ---- inflight, status, device-specific -----------------------------------------------------

    @Test
    void shouldDropTheConnectionOnGetInflightFdWhichWasNotOffered() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            f.send(GET_INFLIGHT_FD, Header.VERSION, new byte[24]);
            assertTrue(f.isClosedByBackend(5000), "no inflight region to hand out: the frontend must not wait for one");
        }
        fx.awaitSessionsEnded();
    }

    @Test
    void shouldRefuseSetInflightFdAndCloseIt() throws IOException {
        try (Probe inflight = OpenFds.probe(); Frontend f = fx.connectWithAcks()) {
            assertNotEquals(0, f.requestWithAck(SET_INFLIGHT_FD, new byte[24], inflight.fd()));
            assertEquals(1, inflight.openCopies());
            assertEquals(0, inflight.mappings());
        }
    }

    @Test
    void shouldStoreAndReportTheStatus() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertEquals(0, f.getStatus());
            assertEquals(0, f.requestWithAck(SET_STATUS, u64(0x0B)));
            assertEquals(0x0B, f.getStatus());
            assertNotEquals(0, f.requestWithAck(SET_STATUS, u64(0x100)));
            assertNotEquals(0, f.requestWithAck(SET_STATUS, u64(-1)));
            assertEquals(0x0B, f.getStatus(), "a refused status changes nothing");
            assertEquals(0, f.requestWithAck(SET_STATUS, u64(0)));
            assertEquals(0, f.getStatus());
        }
    }

    @Test
    void shouldRefuseMtuAndRarpOnADeviceThatImplementsNeither() throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            long pfs = f.getProtocolFeatures();
            assertEquals(0, pfs & (pf(ProtocolFeatures.MTU) | pf(ProtocolFeatures.RARP)), "neither offered");
            assertNotEquals(0, f.requestWithAck(NET_SET_MTU, u64(1500)));
            assertNotEquals(0, f.requestWithAck(SEND_RARP, u64(0x52_54_00_12_34_56L)));
            assertEquals(2, f.getQueueNum(), "connection still served");
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {0, IOTLB_MSG, SET_VRING_ENDIAN, CREATE_CRYPTO_SESSION, CLOSE_CRYPTO_SESSION, POSTCOPY_ADVISE,
        POSTCOPY_LISTEN, POSTCOPY_END, GPU_SET_SOCKET, VRING_KICK, 41, 99, 1000, Integer.MAX_VALUE, -1})
    void shouldRefuseUnknownAndUnsupportedRequestsAndKeepServing(int request) throws IOException {
        try (Frontend f = fx.connectWithAcks()) {
            assertNotEquals(0, f.requestWithAck(request, u64(0)));
            f.send(request, Header.VERSION, u64(0));
            assertEquals(TestDevice.DEVICE_FEATURE | FRAMEWORK_FEATURES, f.getFeatures(),
                    "without NEED_REPLY a refusal sends nothing, and the connection stays");
        }
    }
}
