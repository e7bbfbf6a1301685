package io.jvhost.core.runtime;

import io.jvhost.core.protocol.Header;
import io.jvhost.core.device.ProtocolFeatures;
import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.core.device.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.Frontend.Reply;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.sys.Fd;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.FileBytes;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.OpenFds.Probe;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.core.device.VirtioFeatures;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Live-migration dirty logging (LOG_SHMFD, SET_LOG_BASE, VHOST_F_LOG_ALL) through a real backend:
 * the log is mapped and answered with an empty reply, and while LOG_ALL is on exactly the pages
 * the backend writes (used ring, device data) are marked, the used ring at the VRING_F_LOG address
 * when one is given. Bad SET_LOG_BASE messages drop the connection; every log fd and mapping goes
 * when it is replaced or the frontend leaves.
 *
 * <p>The test reads the shared log with {@code pread} ({@link FileBytes}), never maps it, so a
 * {@link Probe}'s mappings are exactly the backend's.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class DirtyLogTest {
    static final long PAGE = 4096;
    static final long LOG_ALL = bit(VirtioFeatures.LOG_ALL);
    static final int QUEUE_SIZE = 64;
    /** A log of one page covers 128 MiB of guest memory, far more than the tests' 1 MiB. */
    static final int LOG_SIZE = 4096;

    private TestDevice device;
    private BackendFixture fx;

    @BeforeEach
    void startBackend() throws IOException {
        device = TestDevice.withQueues(1).build();
        fx = BackendFixture.start(device);
    }

    @AfterEach
    void stopBackend() throws IOException {
        fx.close();
    }

    /**
     * Handshake with every protocol feature offered (LOG_SHMFD and REPLY_ACK among them), then
     * queue {@code q} running with every offered feature but LOG_ALL. Returns those features.
     */
    private static long startWithoutLogAll(Frontend f, GuestRam ram, DriverQueue q) throws IOException {
        long offered = f.handshakeLikeQemu(1);
        assertTrue((offered & LOG_ALL) != 0, "VHOST_F_LOG_ALL offered");
        long features = (offered & ~LOG_ALL) | bit(VirtioFeatures.PROTOCOL_FEATURES);
        f.startLikeQemu(features, ram, q);
        return features;
    }

    /** SET_LOG_BASE of {@code log}; asserts the reply is empty, as QEMU expects. */
    private static void setLogBase(Frontend f, Probe log, long size, long offset) throws IOException {
        Reply r = f.call(SET_LOG_BASE, Payloads.logBase(size, offset), log.fd());
        assertEquals(Header.VERSION | Header.REPLY, r.flags());
        assertEquals(0, r.payload().length, "SET_LOG_BASE is answered with an empty payload");
        assertEquals(0, r.fds().length);
    }

    /** Pages whose bit is set in the {@code length}-byte log at {@code offset} of {@code log}. */
    private static Set<Long> dirtyPages(Probe log, long offset, int length) {
        byte[] bitmap = FileBytes.read(log.fd(), offset, length);
        Set<Long> pages = new TreeSet<>();
        for (int i = 0; i < bitmap.length; i++) {
            for (int b = 0; b < 8; b++) {
                if ((bitmap[i] & (1 << b)) != 0) {
                    pages.add(8L * i + b); // little-endian u64 words: page p is bit p % 8 of byte p / 8
                }
            }
        }
        return pages;
    }

    private static Set<Long> dirtyPages(Probe log) {
        return dirtyPages(log, 0, LOG_SIZE);
    }

    private static void clear(Probe log) {
        FileBytes.write(log.fd(), 0, new byte[LOG_SIZE]);
    }

    /** Pages that {@code [gpa, gpa + length)} touches. */
    private static Set<Long> pages(long gpa, long length) {
        Set<Long> pages = new TreeSet<>();
        for (long p = gpa / PAGE; p <= (gpa + length - 1) / PAGE; p++) {
            pages.add(p);
        }
        return pages;
    }

    private static long usedRingGpa(DriverQueue q) {
        return q.usedHva() - GuestRam.HVA_BASE;
    }

    private static long usedRingLength(DriverQueue q) {
        return 6 + 8L * q.size();
    }

    @SafeVarargs
    private static Set<Long> union(Set<Long>... sets) {
        Set<Long> all = new TreeSet<>();
        for (Set<Long> s : sets) {
            all.addAll(s);
        }
        return all;
    }

    /**
     * One echo request whose 100 bytes the device writes into the last 16 bytes of one page and
     * the first 84 of the next, in a writable buffer three pages long (the rest is room the device
     * does not use); what it reads sits on a page of its own. Waits until it is complete.
     */
    private record Echo(long readGpa, long writeGpa, Set<Long> writtenPages) {
        static Echo run(Frontend f, DriverQueue q, int seed) throws IOException {
            GuestRam ram = q.ram();
            long base = ram.allocate(6 * PAGE, PAGE);
            long in = base + 4 * PAGE + 100, out = base + PAGE - 16;
            byte[] data = Traffic.pattern(100, seed);
            ram.at(in, 100).copyFrom(java.lang.foreign.MemorySegment.ofArray(data));
            int head = q.post(Buffer.readable(in, 100), Buffer.writable(out, (int) (3 * PAGE)));
            assertEquals(new Used(head, 100), q.awaitUsed(Traffic.USED_TIMEOUT));
            assertArrayEquals(data, ram.at(out, 100).toArray(ValueLayout.JAVA_BYTE));
            Traffic.quiesce(f, q); // every store and mark of this cycle is done
            return new Echo(in, out, Set.of(base / PAGE, base / PAGE + 1));
        }
    }

    // ---- SET_LOG_BASE itself ---------------------------------------------------------------------

    @ParameterizedTest(name = "NEED_REPLY set: {0}")
    @ValueSource(booleans = {false, true})
    void shouldMapTheLogAndAnswerWithOneEmptyReplyWhateverNeedReplySays(boolean needReply) throws IOException {
        try (Probe log = OpenFds.probe(LOG_SIZE); Frontend f = fx.connect()) {
            f.setProtocolFeatures(ProtocolFeatures.bit(ProtocolFeatures.LOG_SHMFD));
            f.send(SET_LOG_BASE, Header.VERSION | (needReply ? Header.NEED_REPLY : 0), Payloads.logBase(LOG_SIZE, 0),
                    log.fd());
            Reply r = f.readReply();
            assertEquals(SET_LOG_BASE, r.request());
            assertEquals(Header.VERSION | Header.REPLY, r.flags());
            assertEquals(0, r.payload().length, "an empty payload, not an ack");
            assertEquals(0, r.fds().length);
            assertEquals(1, f.getQueueNum(), "exactly one reply: the next request gets its own");
            assertEquals(1, log.mappings(), "the log is mapped");
            assertEquals(1, log.openCopies(), "the backend keeps the mapping, not the fd");
            assertEquals(Set.of(), dirtyPages(log), "nothing marked yet");
        }
    }

    @Test
    void shouldReleaseTheLogsMappingWhenTheFrontendDisconnects() throws IOException {
        try (Probe log = OpenFds.probe(LOG_SIZE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE)) {
            try (Frontend f = fx.connect()) {
                long features = startWithoutLogAll(f, ram, q);
                setLogBase(f, log, LOG_SIZE, 0);
                assertEquals(0, f.setFeatures(features | LOG_ALL));
                Echo.run(f, q, 1);
                assertEquals(1, log.mappings());
            }
            fx.awaitSessionsEnded();
            assertEquals(0, log.mappings(), "log unmapped with the session");
            assertEquals(1, log.openCopies(), "no fd of the log left in the backend");
        }
    }

    @Test
    void shouldReplaceTheLogWithASecondOneAndUnmapTheFirst() throws IOException {
        try (Probe first = OpenFds.probe(LOG_SIZE); Probe second = OpenFds.probe(LOG_SIZE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            long features = startWithoutLogAll(f, ram, q);
            setLogBase(f, first, LOG_SIZE, 0);
            assertEquals(0, f.setFeatures(features | LOG_ALL));
            Echo e1 = Echo.run(f, q, 1);
            assertTrue(dirtyPages(first).containsAll(e1.writtenPages()), "the first log is in use");

            setLogBase(f, second, LOG_SIZE, 0);
            assertEquals(0, first.mappings(), "the first log is unmapped once the queues moved to the second");
            assertEquals(1, first.openCopies());
            assertEquals(1, second.mappings());
            assertEquals(1, second.openCopies());
            clear(first);

            Echo e2 = Echo.run(f, q, 2);
            assertEquals(union(e2.writtenPages(), pages(usedRingGpa(q), usedRingLength(q))), dirtyPages(second));
            assertEquals(Set.of(), dirtyPages(first), "the first log is no longer written");
        }
    }

    // ---- what is marked --------------------------------------------------------------------------

    @Test
    void shouldMarkTheUsedDescriptorsInAPackedRingAndTheDeviceEventAreaAndThePagesTheDeviceWrote() throws IOException {
        try (Probe log = OpenFds.probe(LOG_SIZE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = DriverQueue.packed(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            long features = startWithoutLogAll(f.driverRings(DriverQueue.Layout.PACKED, false), ram, q);
            assertTrue((features & bit(VirtioFeatures.RING_PACKED)) != 0, "RING_PACKED offered and taken");
            long ringGpa = q.descHva() - GuestRam.HVA_BASE, deviceEventGpa = q.usedHva() - GuestRam.HVA_BASE;
            setLogBase(f, log, LOG_SIZE, 0);
            assertEquals(0, f.setFeatures(features | LOG_ALL));

            Echo e = Echo.run(f, q, 1);
            // The used descriptor went into the ring's first slot; the device event structure may have
            // been written (notification suppression) on the way.
            Set<Long> dirty = dirtyPages(log);
            assertTrue(dirty.containsAll(union(pages(ringGpa, 16), e.writtenPages())), dirty.toString());
            assertTrue(union(pages(ringGpa, 16L * QUEUE_SIZE), pages(deviceEventGpa, 4), e.writtenPages()).containsAll(dirty),
                    "nothing but the ring, the device event structure and the data: " + dirty);
            assertFalse(dirty.contains(e.readGpa() / PAGE), "what the device only read is not marked");
        }
    }


    @Test
    void shouldMarkExactlyTheUsedRingAndThePagesTheDeviceWroteWhileLogAllIsOn() throws IOException {
        try (Probe log = OpenFds.probe(LOG_SIZE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            long features = startWithoutLogAll(f, ram, q);
            Set<Long> usedRing = pages(usedRingGpa(q), usedRingLength(q));
            assertEquals(1, usedRing.size(), "the used ring fits in one page, so every page of it is touched");
            setLogBase(f, log, LOG_SIZE, 0);
            assertEquals(0, f.setFeatures(features | LOG_ALL));

            Echo e = Echo.run(f, q, 1);
            assertFalse(e.writtenPages().contains(e.readGpa() / PAGE));
            assertEquals(union(usedRing, e.writtenPages()), dirtyPages(log),
                    "the used ring's page and the two pages the 100 written bytes span; not what was only read, "
                            + "not the room the device left unused, not the descriptor table or avail ring");
        }
    }

    @Test
    void shouldMarkTheFillOfAChainWithNothingToReadAcrossEveryPageItCovers() throws IOException {
        try (Probe log = OpenFds.probe(LOG_SIZE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            long features = startWithoutLogAll(f, ram, q);
            setLogBase(f, log, LOG_SIZE, 0);
            assertEquals(0, f.setFeatures(features | LOG_ALL));

            long base = ram.allocate(4 * PAGE, PAGE);
            long a = base + 10, b = base + 2 * PAGE - 1; // 2 * PAGE - 10 bytes, then 2 bytes across a boundary
            int head = q.post(Buffer.writable(a, (int) (2 * PAGE - 10)), Buffer.writable(b, 2));
            assertEquals(new Used(head, (int) (2 * PAGE - 8)), q.awaitUsed(Traffic.USED_TIMEOUT));
            Traffic.quiesce(f, q);
            assertEquals(union(pages(usedRingGpa(q), usedRingLength(q)), Set.of(base / PAGE, base / PAGE + 1, base / PAGE + 2)),
                    dirtyPages(log));
        }
    }

    @Test
    void shouldLogTheUsedRingAtTheAddressGivenWithVringFLog() throws IOException {
        try (Probe log = OpenFds.probe(LOG_SIZE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            long features = startWithoutLogAll(f, ram, q);
            setLogBase(f, log, LOG_SIZE, 0);
            assertEquals(0, f.setFeatures(features | LOG_ALL));
            // As QEMU does when migration starts: the rings again, with VHOST_VRING_F_LOG and the used
            // ring's guest address. This one differs from the real one, and its first used element
            // (bytes 4..11) straddles pages 0x80 and 0x81.
            long logAddress = 0x8_0FF8;
            assertEquals(0, f.request(SET_VRING_ADDR,
                    Payloads.vringAddr(0, 1, q.descHva(), q.usedHva(), q.availHva(), logAddress)));
            clear(log); // marks made at the real used ring before the switch

            Echo e = Echo.run(f, q, 1);
            assertEquals(union(Set.of(0x80L, 0x81L), e.writtenPages()), dirtyPages(log),
                    "used ring writes logged at the log address, not at the ring's own page "
                            + pages(usedRingGpa(q), usedRingLength(q)));
        }
    }

    @Test
    void shouldMarkNothingWithALogSetButLogAllNotAcked() throws IOException {
        try (Probe log = OpenFds.probe(LOG_SIZE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            startWithoutLogAll(f, ram, q);
            setLogBase(f, log, LOG_SIZE, 0);
            Echo.run(f, q, 1);
            Echo.run(f, q, 2);
            assertEquals(Set.of(), dirtyPages(log));
        }
    }

    @Test
    void shouldStopMarkingWhenLogAllIsTurnedOffAndStartAgainWhenItIsBack() throws IOException {
        try (Probe log = OpenFds.probe(LOG_SIZE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            long features = startWithoutLogAll(f, ram, q);
            setLogBase(f, log, LOG_SIZE, 0);
            assertEquals(0, f.setFeatures(features | LOG_ALL));
            Echo e1 = Echo.run(f, q, 1);
            assertTrue(dirtyPages(log).containsAll(e1.writtenPages()));

            assertEquals(0, f.setFeatures(features)); // migration cancelled
            clear(log); // after the ack: the queue already runs without the log
            Echo.run(f, q, 2);
            Echo.run(f, q, 3);
            assertEquals(Set.of(), dirtyPages(log), "nothing marked with LOG_ALL off");

            assertEquals(0, f.setFeatures(features | LOG_ALL));
            Echo e4 = Echo.run(f, q, 4);
            assertEquals(union(pages(usedRingGpa(q), usedRingLength(q)), e4.writtenPages()), dirtyPages(log));
        }
    }

    @Test
    void shouldWriteTheLogAtItsOffsetAndCountPagesPastItsEndWithoutWritingThem() throws IOException {
        // 8 bytes of log at offset 4096 of a two-page file: pages 0..63 (256 KiB) of guest memory only.
        try (Probe log = OpenFds.probe(2 * LOG_SIZE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, QUEUE_SIZE); Frontend f = fx.connect()) {
            long features = startWithoutLogAll(f, ram, q);
            setLogBase(f, log, 8, LOG_SIZE);
            assertEquals(0, f.setFeatures(features | LOG_ALL));
            ram.allocate(1, 1);
            ram.allocate(100 * PAGE, PAGE); // the echo's buffers go beyond page 64

            Echo e = Echo.run(f, q, 1);
            assertTrue(e.writeGpa() / PAGE >= 64);
            assertEquals(pages(usedRingGpa(q), usedRingLength(q)), dirtyPages(log, LOG_SIZE, 8),
                    "the used ring marked in the log, at its offset");
            assertEquals(Set.of(), dirtyPages(log, 0, LOG_SIZE), "nothing before the offset");
            assertEquals(Set.of(), dirtyPages(log, LOG_SIZE + 8, LOG_SIZE - 8), "nothing past the log's 8 bytes");
            Echo.run(f, q, 2); // and the queue goes on
        }
    }

    // ---- refusals ----------------------------------------------------------------------------------

    /** A SET_LOG_BASE the backend must refuse; {@code fds} copies of the probe go with it. */
    record BadLogBase(String name, boolean logShmfd, byte[] payload, int fds) {
        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<BadLogBase> badLogBases() {
        byte[] good = Payloads.logBase(LOG_SIZE, 0);
        return Stream.of(
                new BadLogBase("LOG_SHMFD not negotiated", false, good, 1),
                new BadLogBase("no fd", true, good, 0),
                new BadLogBase("two fds", true, good, 2),
                new BadLogBase("payload of 8 bytes", true, Payloads.u64(LOG_SIZE), 1),
                new BadLogBase("payload of 24 bytes", true, ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN)
                        .putLong(LOG_SIZE).putLong(0).putLong(0).array(), 1),
                new BadLogBase("empty payload", true, Payloads.NONE, 1),
                new BadLogBase("size 0", true, Payloads.logBase(0, 0), 1),
                new BadLogBase("log longer than its file", true, Payloads.logBase(LOG_SIZE + 1, 0), 1),
                new BadLogBase("log at an offset past its file", true, Payloads.logBase(8, LOG_SIZE), 1),
                new BadLogBase("offset not a multiple of 8 (words are marked atomically)", true, Payloads.logBase(8, 4), 1),
                new BadLogBase("size at 2^64 - 4096", true, Payloads.logBase(-PAGE, 0), 1),
                new BadLogBase("offset at 2^63", true, Payloads.logBase(8, Long.MIN_VALUE), 1),
                new BadLogBase("offset + size past 2^63", true, Payloads.logBase(PAGE, Long.MAX_VALUE - 100), 1),
                new BadLogBase("offset + size wrapping 2^64", true, Payloads.logBase(2 * PAGE, -PAGE), 1));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badLogBases")
    void shouldDropTheConnectionOnABadLogBaseAndCloseItsFds(BadLogBase bad) throws IOException {
        try (Probe log = OpenFds.probe(LOG_SIZE); Frontend f = fx.connect()) {
            long pf = f.getProtocolFeatures();
            f.setProtocolFeatures(bad.logShmfd() ? pf : pf & ~ProtocolFeatures.bit(ProtocolFeatures.LOG_SHMFD));
            Fd[] fds = new Fd[bad.fds()];
            java.util.Arrays.fill(fds, log.fd());
            f.send(SET_LOG_BASE, Header.VERSION | Header.NEED_REPLY, bad.payload(), fds);
            assertTrue(f.isClosedByBackend(BackendFixture.REPLY_TIMEOUT.toMillis()),
                    "the frontend waits for a reply it will not get: the connection must go");
            fx.awaitSessionsEnded();
            assertEquals(0, log.mappings(), "nothing mapped");
            assertEquals(1, log.openCopies(), "every fd received closed");
        }
    }

    @Test
    void shouldDropTheConnectionOnALogBaseWhoseFdIsNotAFileAndCloseIt() throws IOException {
        try (Fd event = io.jvhost.core.sys.EventFd.create(); Frontend f = fx.connect()) {
            long eventFds = OpenFds.countLinksTo(OpenFds.EVENTFD);
            f.setProtocolFeatures(f.getProtocolFeatures());
            f.send(SET_LOG_BASE, Header.VERSION, Payloads.logBase(8, 0), event);
            assertTrue(f.isClosedByBackend(BackendFixture.REPLY_TIMEOUT.toMillis()));
            fx.awaitSessionsEnded();
            assertEquals(eventFds, OpenFds.countLinksTo(OpenFds.EVENTFD), "the eventfd received closed");
        }
    }

    @Test
    void shouldStillRefuseSetLogFdAndKeepServing() throws IOException {
        try (Probe log = OpenFds.probe(); Frontend f = fx.connect()) {
            f.setProtocolFeatures(f.getProtocolFeatures());
            assertNotEquals(0, f.requestWithAck(SET_LOG_FD, Payloads.NONE, log.fd()));
            assertEquals(1, log.openCopies());
            assertEquals(1, f.getQueueNum());
        }
    }
}
