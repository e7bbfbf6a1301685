package io.jvhost.core.runtime;

import io.jvhost.core.protocol.Header;
import io.jvhost.core.device.ProtocolFeatures;
import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.core.device.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.Frontend.Inflight;
import io.jvhost.testkit.frontend.Frontend.Reply;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.FileCalls;
import io.jvhost.testkit.Await;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.FileBytes;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.OpenFds.Probe;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.testkit.Traffic.Request;
import io.jvhost.core.device.VirtioFeatures;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Inflight I/O tracking (INFLIGHT_SHMFD) on a device that opts in: GET_INFLIGHT_FD hands out a
 * fresh, initialized memfd; SET_INFLIGHT_FD takes one; the requests a previous backend left in
 * flight are resubmitted first, in the order they were taken, exactly once, and the ring resumes
 * after them. The test writes and reads regions with {@code pread}/{@code pwrite}
 * ({@link FileBytes}), so a {@link Probe}'s mappings are exactly the backend's.
 *
 * <p>Region layout per queue (vhost-user spec, split rings): u64 features, u16 version, u16
 * desc_num, u16 last_batch_head, u16 used_idx, then per head {u8 inflight, u8 pad[5], u16 next,
 * u64 counter}; each queue's part rounded up to 64 bytes.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class InflightTest {
    static final long INFLIGHT_SHMFD = ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD);
    /** How the backend names the memfds it creates for GET_INFLIGHT_FD. */
    static final String BACKEND_MEMFD = "/memfd:jvhost-inflight";
    static final int HEADER = 16, DESC = 16;
    static final int VERSION_OFFSET = 8, DESC_NUM_OFFSET = 10, LAST_BATCH_HEAD_OFFSET = 12, USED_IDX_OFFSET = 14;
    static final int QUEUE_SIZE = 16;

    private TestDevice device;
    private BackendFixture fx;

    @BeforeEach
    void startBackend() throws IOException {
        device = TestDevice.withQueues(2).protocolFeatures(INFLIGHT_SHMFD).build();
        fx = BackendFixture.start(device);
    }

    @AfterEach
    void stopBackend() throws IOException {
        fx.close();
    }

    /** Bytes per queue, computed from the layout rather than asked of the backend. */
    static long perQueue(int queueSize) {
        return (HEADER + (long) DESC * queueSize + 63) & ~63L;
    }

    /** {@code struct vhost_user_inflight}: mmap size and offset, queue count, queue size (24 bytes, padded). */
    static byte[] inflightPayload(long mmapSize, long mmapOffset, int queues, int queueSize) {
        return ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN).putLong(mmapSize).putLong(mmapOffset)
                .putShort((short) queues).putShort((short) queueSize).array();
    }

    static ByteBuffer le(byte[] b) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Asserts that queue {@code q}'s part of {@code region} is a fresh one: header initialized, all else zero. */
    static void assertFreshQueueRegion(Fd region, int q, int queueSize) {
        long per = perQueue(queueSize);
        ByteBuffer b = le(FileBytes.read(region, q * per, (int) per));
        assertEquals(0, b.getLong(0), "queue " + q + " features");
        assertEquals(1, b.getShort(VERSION_OFFSET), "queue " + q + " version");
        assertEquals(queueSize, Short.toUnsignedInt(b.getShort(DESC_NUM_OFFSET)), "queue " + q + " desc_num");
        assertEquals(0, b.getShort(LAST_BATCH_HEAD_OFFSET), "queue " + q + " last_batch_head");
        assertEquals(0, b.getShort(USED_IDX_OFFSET), "queue " + q + " used_idx");
        int firstNonZero = -1;
        for (int i = HEADER; i < per && firstNonZero < 0; i++) {
            firstNonZero = b.get(i) != 0 ? i : -1;
        }
        assertEquals(-1, firstNonZero, "queue " + q + ": descriptor states all zero");
    }

    // ---- GET_INFLIGHT_FD ---------------------------------------------------------------------------

    @Test
    void shouldOfferInflightShmfdWhenTheDeviceOptsIn() throws IOException {
        try (Frontend f = fx.connect()) {
            assertEquals(FeaturePolicy.PROTOCOL_FEATURES | INFLIGHT_SHMFD, f.getProtocolFeatures());
        }
    }

    /**
     * With RING_PACKED negotiated first (as QEMU 7.2 does before GET_INFLIGHT_FD), the region has the
     * spec's {@code QueueRegionPacked} layout: a 32-byte header (used_idx, wrap counters 1, free
     * list heads) and 32 bytes per descriptor state, every one free and linked to the next.
     */
    @ParameterizedTest(name = "{0} queues of {1}")
    @CsvSource({"1, 16", "2, 256"})
    void shouldLayTheRegionOutForPackedRingsWhenRingPackedIsNegotiated(int queues, int queueSize) throws IOException {
        try (Frontend f = fx.connect()) {
            f.setProtocolFeatures(f.getProtocolFeatures());
            assertEquals(0, f.setFeatures(bit(VirtioFeatures.VERSION_1) | bit(VirtioFeatures.RING_PACKED)
                    | bit(VirtioFeatures.PROTOCOL_FEATURES)));
            Reply r = f.call(GET_INFLIGHT_FD, inflightPayload(0, 0, queues, queueSize));
            try (Fd region = r.fds()[0]) {
                long per = (32 + 32L * queueSize + 63) & ~63L; // QueueRegionPacked, from the spec
                assertEquals(queues * per, le(r.payload()).getLong(0), "mmap_size");
                for (int q = 0; q < queues; q++) {
                    ByteBuffer b = le(FileBytes.read(region, q * per, (int) per));
                    assertEquals(1, b.getShort(8), "version");
                    assertEquals(queueSize, Short.toUnsignedInt(b.getShort(10)), "desc_num");
                    assertEquals(0, b.getShort(12), "free_head");
                    assertEquals(0, b.getShort(16), "used_idx");
                    assertEquals(1, b.get(20), "used_wrap_counter");
                    assertEquals(1, b.get(21), "old_used_wrap_counter");
                    for (int d = 0; d < queueSize; d++) {
                        assertEquals(0, b.get(32 + 32 * d), "desc " + d + " not in flight");
                        assertEquals(d + 1, Short.toUnsignedInt(b.getShort(32 + 32 * d + 2)), "desc " + d + " next");
                    }
                }
            }
        }
    }

    @ParameterizedTest(name = "{0} queues of {1}")
    @CsvSource({"1, 1", "1, 16", "2, 64", "2, 256", "2, 32768"})
    void shouldHandOutAMemfdOfTheRightSizeWithEveryQueueHeaderInitializedAndTheRestZero(int queues, int queueSize)
            throws IOException {
        try (Frontend f = fx.connect()) {
            f.setProtocolFeatures(f.getProtocolFeatures());
            Reply r = f.call(GET_INFLIGHT_FD, inflightPayload(0, 0, queues, queueSize));
            assertEquals(1, r.fds().length, "one fd: the region");
            try (Fd region = r.fds()[0]) {
                assertEquals(Header.VERSION | Header.REPLY, r.flags());
                assertEquals(24, r.payload().length);
                ByteBuffer b = le(r.payload());
                long size = queues * perQueue(queueSize);
                assertEquals(size, b.getLong(0), "mmap_size");
                assertEquals(0, b.getLong(8), "mmap_offset");
                assertEquals(queues, Short.toUnsignedInt(b.getShort(16)), "num_queues");
                assertEquals(queueSize, Short.toUnsignedInt(b.getShort(18)), "queue_size");
                assertEquals(size, FileCalls.fileSize(region.get()), "the memfd holds exactly the region");
                for (int q = 0; q < queues; q++) {
                    assertFreshQueueRegion(region, q, queueSize);
                }
                // The backend closes its fd just after the reply that carried it went out.
                Await.until("the backend closes its fd of the region: only ours stays open",
                        () -> OpenFds.countLinksTo(BACKEND_MEMFD) == 1);
                assertEquals(1, OpenFds.mappingsOf(BACKEND_MEMFD), "the backend mapped it");
            }
        }
        fx.awaitSessionsEnded();
        assertEquals(0, OpenFds.mappingsOf(BACKEND_MEMFD), "unmapped with the session");
    }

    @Test
    void shouldHandOutAFreshZeroedRegionOnEveryGetAndUnmapThePreviousOne() throws IOException {
        try (Frontend f = fx.connect()) {
            f.setProtocolFeatures(f.getProtocolFeatures());
            try (Inflight first = f.getInflightFd(2, 64)) {
                byte[] scribble = new byte[(int) first.size()];
                java.util.Arrays.fill(scribble, (byte) 0x5A);
                FileBytes.write(first.fd(), 0, scribble); // as if requests had been tracked in it
                try (Inflight second = f.getInflightFd(2, 64)) {
                    assertEquals(first.size(), second.size());
                    assertFreshQueueRegion(second.fd(), 0, 64);
                    assertFreshQueueRegion(second.fd(), 1, 64);
                    assertEquals(0x5A, FileBytes.read(first.fd(), 0, 1)[0], "a new memfd, not the first one cleared");
                    assertEquals(1, OpenFds.mappingsOf(BACKEND_MEMFD), "only the second region stays mapped");
                    Await.until("the backend holds no fd of either region", () -> OpenFds.countLinksTo(BACKEND_MEMFD) == 2);
                }
            }
        }
        fx.awaitSessionsEnded();
        assertEquals(0, OpenFds.mappingsOf(BACKEND_MEMFD));
    }

    /** A GET_INFLIGHT_FD the backend must refuse. */
    record BadGet(String name, byte[] payload, boolean withFd) {
        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<BadGet> badGets() {
        return Stream.of(
                new BadGet("0 queues", inflightPayload(0, 0, 0, 64), false),
                new BadGet("more queues than the device has", inflightPayload(0, 0, 3, 64), false),
                new BadGet("65535 queues", inflightPayload(0, 0, 0xFFFF, 64), false),
                new BadGet("queue size 0", inflightPayload(0, 0, 1, 0), false),
                new BadGet("queue size 3", inflightPayload(0, 0, 1, 3), false),
                new BadGet("queue size 48", inflightPayload(0, 0, 1, 48), false),
                new BadGet("queue size 65535", inflightPayload(0, 0, 1, 0xFFFF), false),
                new BadGet("empty payload", Payloads.NONE, false),
                new BadGet("payload of 16 bytes", new byte[16], false),
                new BadGet("payload of 19 bytes", java.util.Arrays.copyOf(inflightPayload(0, 0, 1, 64), 19), false),
                new BadGet("payload of 32 bytes", java.util.Arrays.copyOf(inflightPayload(0, 0, 1, 64), 32), false),
                new BadGet("an fd with it", inflightPayload(0, 0, 1, 64), true));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badGets")
    void shouldDropTheConnectionOnABadGetInflightFd(BadGet bad) throws IOException {
        try (Probe probe = OpenFds.probe(); Frontend f = fx.connect()) {
            f.setProtocolFeatures(f.getProtocolFeatures());
            if (bad.withFd()) {
                f.send(GET_INFLIGHT_FD, Header.VERSION, bad.payload(), probe.fd());
            } else {
                f.send(GET_INFLIGHT_FD, Header.VERSION, bad.payload());
            }
            assertTrue(f.isClosedByBackend(BackendFixture.REPLY_TIMEOUT.toMillis()),
                    "the frontend waits for a region: a refusal must end the connection");
            fx.awaitSessionsEnded();
            assertEquals(1, probe.openCopies(), "an fd sent along is closed");
            assertEquals(0, OpenFds.countLinksTo(BACKEND_MEMFD), "no region created and kept");
            assertEquals(0, OpenFds.mappingsOf(BACKEND_MEMFD));
        }
    }

    // ---- SET_INFLIGHT_FD ---------------------------------------------------------------------------

    @Test
    void shouldMapARegionGivenWithSetInflightFdKeepNoFdAndUnmapItAtDisconnect() throws IOException {
        long size = 2 * perQueue(64);
        try (Probe region = OpenFds.probe(size)) {
            try (Frontend f = fx.connect()) {
                f.setProtocolFeatures(f.getProtocolFeatures());
                assertEquals(0, f.requestWithAck(SET_INFLIGHT_FD, inflightPayload(size, 0, 2, 64), region.fd()));
                assertEquals(1, region.mappings());
                assertEquals(1, region.openCopies(), "the backend closed its copy once mapped");
            }
            fx.awaitSessionsEnded();
            assertEquals(0, region.mappings());
        }
    }

    /** A SET_INFLIGHT_FD the backend must refuse (with an ack, keeping the connection). */
    record BadSet(String name, long fileSize, byte[] payload, int fds) {
        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<BadSet> badSets() {
        long need = perQueue(64);
        return Stream.of(
                new BadSet("an fd smaller than the region", 64, inflightPayload(need, 0, 1, 64), 1),
                new BadSet("an fd one byte short", need - 1, inflightPayload(need, 0, 1, 64), 1),
                new BadSet("an offset that leaves too little", need, inflightPayload(need, 4096, 1, 64), 1),
                new BadSet("mmap_size smaller than the queues need", 4 * need, inflightPayload(need - 64, 0, 2, 64), 1),
                new BadSet("negative mmap_offset", need, inflightPayload(need, -4096, 1, 64), 1),
                new BadSet("mmap_offset not a multiple of 8", need + 4096, inflightPayload(need, 4, 1, 64), 1),
                new BadSet("mmap_offset + mmap_size past 2^63", need, inflightPayload(need, Long.MAX_VALUE - 64, 1, 64), 1),
                new BadSet("no fd", need, inflightPayload(need, 0, 1, 64), 0),
                new BadSet("two fds", need, inflightPayload(need, 0, 1, 64), 2),
                new BadSet("0 queues", need, inflightPayload(need, 0, 0, 64), 1),
                new BadSet("3 queues", 3 * need, inflightPayload(3 * need, 0, 3, 64), 1),
                new BadSet("queue size 24", need, inflightPayload(need, 0, 1, 24), 1),
                new BadSet("payload of 8 bytes", need, Payloads.u64(need), 1));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badSets")
    void shouldRefuseABadSetInflightFdAndCloseItsFds(BadSet bad) throws IOException {
        try (Probe region = OpenFds.probe(bad.fileSize()); Frontend f = fx.connect()) {
            f.setProtocolFeatures(f.getProtocolFeatures());
            Fd[] fds = new Fd[bad.fds()];
            java.util.Arrays.fill(fds, region.fd());
            assertNotEquals(0, f.requestWithAck(SET_INFLIGHT_FD, bad.payload(), fds));
            assertEquals(0, region.mappings(), "nothing mapped");
            assertEquals(1, region.openCopies(), "every fd received closed");
            assertEquals(2, f.getQueueNum(), "the connection is still served");
        }
    }

    // ---- resubmission ------------------------------------------------------------------------------

    /** Writes an echo chain at descriptors {@code head} (readable) and {@code head + 1} (writable). */
    private static Request echoChainAt(DriverQueue q, int head, int seed) {
        Request r = Traffic.request(q.ram(), Traffic.pattern(32 + seed, seed));
        q.writeDescriptor(head, r.inGpa(), r.data().length, DriverQueue.F_NEXT, head + 1);
        q.writeDescriptor(head + 1, r.outGpa(), r.data().length, DriverQueue.F_WRITE, 0);
        return r;
    }

    /** A queue region as a previous backend left it: {@code usedIdx}, and {heads[i], counters[i]} in flight. */
    private static void writeRegion(Probe region, int queueSize, int usedIdx, int[] heads, long[] counters) {
        ByteBuffer b = ByteBuffer.allocate((int) perQueue(queueSize)).order(ByteOrder.LITTLE_ENDIAN);
        b.putShort(VERSION_OFFSET, (short) 1).putShort(DESC_NUM_OFFSET, (short) queueSize)
                .putShort(USED_IDX_OFFSET, (short) usedIdx);
        for (int i = 0; i < heads.length; i++) {
            int d = HEADER + DESC * heads[i];
            b.put(d, (byte) 1).putShort(d + 6, (short) 0).putLong(d + 8, counters[i]);
        }
        FileBytes.write(region.fd(), 0, b.array());
    }

    /** Configures queue 0 from scratch at avail base {@code base} (REPLY_ACK on) and kicks it. */
    private static void startQueue(Frontend f, long features, GuestRam ram, DriverQueue q, int base) throws IOException {
        assertEquals(0, f.setFeatures(features));
        assertEquals(0, f.setMemTable(ram));
        assertEquals(0, f.setVringNum(0, q.size()));
        assertEquals(0, f.setVringBase(0, base));
        assertEquals(0, f.setVringAddr(q));
        assertEquals(0, f.setVringCall(0, q.callFd()));
        assertEquals(0, f.setVringEnable(0, true));
        assertEquals(0, f.setVringKick(0, q.kickFd()));
    }

    private static long features(long offered) {
        return offered & (bit(VirtioFeatures.VERSION_1) | bit(VirtioFeatures.RING_INDIRECT_DESC)
                | bit(VirtioFeatures.PROTOCOL_FEATURES));
    }

    @Test
    void shouldResubmitTheHeadsLeftInFlightFirstInCounterOrderExactlyOnceAndResumeAfterThem() throws IOException {
        long size = perQueue(QUEUE_SIZE);
        try (Probe region = OpenFds.probe(size); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            // What the previous backend saw: 100 chains completed, then heads 5, 2, 9 made available
            // and taken (counters 30, 10, 20: taken as 2, 9, 5), then head 12 made available, not taken.
            Request r2 = echoChainAt(q, 2, 2), r5 = echoChainAt(q, 5, 5), r9 = echoChainAt(q, 9, 9), r12 = echoChainAt(q, 12, 12);
            q.startAt(100);
            for (int head : new int[] {5, 2, 9, 12}) {
                q.makeAvailable(head);
            }
            writeRegion(region, QUEUE_SIZE, 100, new int[] {5, 2, 9}, new long[] {30, 10, 20});

            long offered = f.handshakeLikeQemu(2);
            assertEquals(0, f.setInflightFd(new Inflight(region.fd(), size, 1, QUEUE_SIZE)));
            // SET_VRING_BASE says 100, the used index: the region knows better (100 + 3 in flight).
            startQueue(f, features(offered), ram, q, 100);

            r2.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), 2);
            r9.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), 9);
            r5.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), 5);
            r12.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), 12);
            assertNull(q.awaitUsed(Duration.ofMillis(300)), "nothing completed twice");
            assertEquals(List.of(2, 9, 5, 12), device.seen(0).stream().map(TestDevice.Seen::head).toList(),
                    "each head processed once; the avail ring was not read again from 100");
            Traffic.quiesce(f, q);

            ByteBuffer b = le(FileBytes.read(region.fd(), 0, (int) size));
            assertEquals(104, Short.toUnsignedInt(b.getShort(USED_IDX_OFFSET)), "used_idx tracked");
            for (int h = 0; h < QUEUE_SIZE; h++) {
                assertEquals(0, b.get(HEADER + DESC * h), "head " + h + " no longer in flight");
            }
            assertEquals(104, f.getVringBase(0), "next avail index: used 100 + 3 resubmitted + 1 new");
        }
    }

    @Test
    void shouldNotResubmitAHeadTheUsedRingAlreadyShowsCompleted() throws IOException {
        long size = perQueue(QUEUE_SIZE);
        try (Probe region = OpenFds.probe(size); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            // The previous backend published head 7 as used element 99 (used idx 100) and died
            // before clearing its flag and moving the region's used_idx past 99.
            Request r2 = echoChainAt(q, 2, 2), r12 = echoChainAt(q, 12, 12);
            echoChainAt(q, 7, 7);
            q.startAt(100);
            long usedGpa = q.usedHva() - GuestRam.HVA_BASE;
            ByteBuffer element = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(7).putInt(39);
            ram.at(usedGpa + 4 + 8L * (99 % QUEUE_SIZE), 8).copyFrom(java.lang.foreign.MemorySegment.ofArray(element.array()));
            q.makeAvailable(2);
            q.makeAvailable(12);
            writeRegion(region, QUEUE_SIZE, 99, new int[] {7, 2}, new long[] {4, 5});

            long offered = f.handshakeLikeQemu(2);
            assertEquals(0, f.setInflightFd(new Inflight(region.fd(), size, 1, QUEUE_SIZE)));
            startQueue(f, features(offered), ram, q, 100);

            r2.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), 2);
            r12.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), 12);
            assertNull(q.awaitUsed(Duration.ofMillis(300)));
            assertEquals(List.of(2, 12), device.seen(0).stream().map(TestDevice.Seen::head).toList(),
                    "head 7 was already used: not resubmitted");
            assertEquals(102, f.getVringBase(0));
        }
    }

    @Test
    void shouldTrackChainsInAFreshRegionAndClearThemWhenUsed() throws IOException {
        try (GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE);
             Frontend f = fx.connect()) {
            long offered = f.handshakeLikeQemu(2);
            try (Inflight inflight = f.getInflightFd(2, QUEUE_SIZE)) {
                assertEquals(0, f.setInflightFd(inflight));
                q.startAt(7);
                startQueue(f, features(offered), ram, q, 7);
                Traffic.echo(q, 5, 0);
                Traffic.quiesce(f, q);
                ByteBuffer b = le(FileBytes.read(inflight.fd(), 0, (int) perQueue(QUEUE_SIZE)));
                assertEquals(12, Short.toUnsignedInt(b.getShort(USED_IDX_OFFSET)), "used_idx follows the ring");
                for (int h = 0; h < QUEUE_SIZE; h++) {
                    assertEquals(0, b.get(HEADER + DESC * h), "head " + h + " completed, not in flight");
                }
                assertEquals(12, f.getVringBase(0), "nothing in flight: the ring's own base was used");
            }
        }
    }
}
