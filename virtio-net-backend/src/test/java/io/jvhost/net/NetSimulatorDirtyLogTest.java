package io.jvhost.net;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.testkit.DirtyPages;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.OpenFds.Probe;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.Traffic;
import io.jvhost.net.NetRig.RxFrame;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.testkit.DirtyPages.PAGE;
import static io.jvhost.testkit.DirtyPages.intersection;
import static io.jvhost.testkit.DirtyPages.minus;
import static io.jvhost.testkit.DirtyPages.pages;
import static io.jvhost.testkit.DirtyPages.union;
import static io.jvhost.testkit.DirtyPages.usedElementPages;
import static io.jvhost.testkit.DirtyPages.usedRingGpa;
import static io.jvhost.testkit.DirtyPages.usedRingPages;
import static io.jvhost.net.NetRig.HEADER;
import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.MRG_RXBUF;
import static io.jvhost.net.NetRig.UNWRITTEN;
import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Live migration of a guest NIC: with VHOST_F_LOG_ALL on and a log given with SET_LOG_BASE, every
 * frame the device delivers into the guest marks exactly the pages of the receive buffers it wrote
 * (header and frame, num_buffers included, across page boundaries and over several chains with
 * mergeable buffers) and of the used ring, and nothing of buffers it did not write; once LOG_ALL
 * is off again nothing more is marked.
 *
 * <p>Buffers are placed by hand on pages of their own, so a page is either written or not. The
 * transmit queue carries no traffic, but the device may still write its used ring (notification
 * suppression), so its pages are the only ones allowed to be marked beyond what a test expects.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NetSimulatorDirtyLogTest {
    static final long LOG_ALL = 1L << 26, PROTOCOL_FEATURES = 1L << 30;
    static final long VRING_F_LOG = 1;
    /** One page of log covers 128 MiB of guest memory, more than the rig's 64 MiB. */
    static final int LOG_SIZE = 4096;
    static final int QUEUE_SIZE = 64;

    private ScriptedPort port;
    private NetRig rig;
    private Probe log;
    /** What the driver accepted, without LOG_ALL. */
    private long features;
    /** Where the device logs each queue's used ring (the ring itself unless VRING_F_LOG moved it). */
    private long rxLogGpa, txLogGpa;

    /** Serves a NIC whose driver accepts {@code accepted}, gives it a log and turns LOG_ALL on. */
    private void serve(long accepted) throws Exception {
        port = new ScriptedPort(1);
        rig = NetRig.serve(port, 1).start(accepted, 1, QUEUE_SIZE);
        assertTrue((rig.offered & LOG_ALL) != 0, "VHOST_F_LOG_ALL offered");
        features = accepted | PROTOCOL_FEATURES;
        rxLogGpa = usedRingGpa(rig.rx(0));
        txLogGpa = usedRingGpa(rig.tx(0));
        log = OpenFds.probe(LOG_SIZE);
        DirtyPages.setLogBase(rig.frontend, log.fd(), LOG_SIZE);
        logAll(true);
    }

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
        if (port != null) {
            port.close();
        }
        if (log != null) {
            log.close();
        }
    }

    /** SET_FEATURES with or without LOG_ALL, as QEMU does when migration starts or is cancelled. */
    private void logAll(boolean on) throws IOException {
        assertEquals(0, rig.frontend.setFeatures(on ? features | LOG_ALL : features));
    }

    private Set<Long> dirtyPages() {
        return DirtyPages.read(log.fd(), LOG_SIZE);
    }

    private void clearLog() {
        DirtyPages.clear(log.fd(), LOG_SIZE);
    }

    /** Fresh guest pages, filled with what the guest leaves in receive buffers. */
    private long pagesOfGuestMemory(int count) {
        long gpa = rig.ram.allocate(count * PAGE, PAGE);
        rig.ram.at(gpa, count * PAGE).fill(UNWRITTEN);
        return gpa;
    }

    /** Posts one receive chain of {@code buffers} on pair 0. */
    private Buffer[] postRx(Buffer... buffers) {
        rig.post(0, buffers);
        return buffers;
    }

    /** The pages that {@code usedLength} bytes, written from the start of {@code buffers} on, touch. */
    private static Set<Long> written(Buffer[] buffers, int usedLength) {
        Set<Long> pages = new TreeSet<>();
        long left = usedLength;
        for (Buffer b : buffers) {
            long n = Math.min(left, b.length());
            pages.addAll(pages(b.gpa(), n));
            left -= n;
        }
        return pages;
    }

    private static Set<Long> allPagesOf(Buffer[] buffers) {
        Set<Long> pages = new TreeSet<>();
        for (Buffer b : buffers) {
            pages.addAll(pages(b.gpa(), b.length()));
        }
        return pages;
    }

    /** Injects {@code frame}, waits for it in the guest and until every store and mark of it is done. */
    private RxFrame receive(byte[] frame) throws IOException {
        assertTrue(port.inject(0, frame));
        RxFrame r = rig.awaitFrame(0);
        assertArrayEquals(frame, r.frame());
        Traffic.quiesce(rig.frontend, rig.rx(0));
        return r;
    }

    /**
     * Asserts the log holds every page in {@code mustBeMarked}, nothing in {@code mustNotBeMarked},
     * and nothing else but pages of the used rings (where the device may also have written the
     * notification-suppression fields).
     */
    private void assertMarked(Set<Long> mustBeMarked, Set<Long> mustNotBeMarked) {
        Set<Long> dirty = dirtyPages();
        assertEquals(Set.of(), minus(mustBeMarked, dirty), "pages the device wrote but did not mark");
        assertEquals(Set.of(), intersection(mustNotBeMarked, dirty), "pages of buffers the device did not write");
        assertEquals(Set.of(), minus(minus(dirty, mustBeMarked), usedRings()), "pages marked that the device did not write");
    }

    /** The pages where the device logs the used rings. */
    private Set<Long> usedRings() {
        return union(usedRingPagesLoggedAt(rig.rx(0), rxLogGpa), usedRingPagesLoggedAt(rig.tx(0), txLogGpa));
    }

    private static Set<Long> usedRingPagesLoggedAt(DriverQueue q, long logGpa) {
        return pages(logGpa, 6 + 8L * q.size());
    }

    /** Pages of receive used elements {@code [from, to)} and the used index, where the device logs them. */
    private Set<Long> rxUsed(int from, int to) {
        return usedElementPages(rig.rx(0), rxLogGpa, from, to);
    }

    /** The test's own layout check: nothing it expects unmarked shares a page with what may be marked. */
    private void assertApart(Set<Long> unwritten, Set<Long> written) {
        assertEquals(Set.of(), intersection(unwritten, union(usedRings(), written)),
                "test layout: unwritten buffers must lie on pages of their own");
    }

    // ---- one chain per frame ---------------------------------------------------------------------

    @Test
    void shouldMarkExactlyTheRxBufferPagesHoldingHeaderAndFrameWithoutMergeableBuffers() throws Exception {
        serve(MODERN);
        // One long buffer that starts 100 bytes before a page boundary: the 1012 bytes written touch
        // two pages, the two pages of room after them are not written.
        long a = pagesOfGuestMemory(4);
        Buffer[] straddling = postRx(Buffer.writable(a + PAGE - 100, (int) (3 * PAGE)));
        // A chain whose header is split over the ends of two pages, the frame going on into a third.
        long b = pagesOfGuestMemory(6);
        Buffer[] split = postRx(Buffer.writable(b + PAGE - 4, 4), Buffer.writable(b + 3 * PAGE - 8, 2 * (int) PAGE));
        // A chain the two frames leave alone.
        long c = pagesOfGuestMemory(2);
        Buffer[] spare = postRx(Buffer.writable(c + 100, (int) PAGE));
        Set<Long> unwritten = union(minus(allPagesOf(straddling), written(straddling, HEADER + 1000)),
                minus(allPagesOf(split), written(split, HEADER + 1500)), allPagesOf(spare));
        assertEquals(5, unwritten.size(), "test layout");
        assertApart(unwritten, union(written(straddling, HEADER + 1000), written(split, HEADER + 1500)));
        int usedBefore = rig.rx(0).usedIdx();

        RxFrame first = receive(frame(1000, 1));
        RxFrame second = receive(frame(1500, 2));

        assertEquals(HEADER + 1000, first.chains().get(0).usedLength());
        assertEquals(HEADER + 1500, second.chains().get(0).usedLength());
        assertEquals(Set.of(a / PAGE, a / PAGE + 1), written(straddling, HEADER + 1000));
        assertEquals(Set.of(b / PAGE, b / PAGE + 2, b / PAGE + 3), written(split, HEADER + 1500));
        assertMarked(union(written(straddling, HEADER + 1000), written(split, HEADER + 1500),
                rxUsed(usedBefore, usedBefore + 2)), unwritten);
    }

    // ---- mergeable receive buffers ---------------------------------------------------------------

    @Test
    void shouldMarkTheOneRxBufferAFrameFillsWithMergeableBuffers() throws Exception {
        serve(MODERN | MRG_RXBUF);
        long a = pagesOfGuestMemory(3);
        Buffer[] fits = postRx(Buffer.writable(a + PAGE - 50, 2048));
        long c = pagesOfGuestMemory(2);
        Buffer[] spare = postRx(Buffer.writable(c + PAGE - 50, 2048));
        Set<Long> unwritten = union(pages(a + 2 * PAGE, PAGE), allPagesOf(spare));
        assertApart(unwritten, written(fits, HEADER + 1514));
        int usedBefore = rig.rx(0).usedIdx();

        RxFrame r = receive(frame(1514, 3));

        assertEquals(1, r.numBuffers());
        assertEquals(Set.of(a / PAGE, a / PAGE + 1), written(fits, HEADER + 1514));
        assertMarked(union(written(fits, HEADER + 1514), rxUsed(usedBefore, usedBefore + 1)), unwritten);
    }

    @Test
    void shouldMarkEveryChainAMergedFrameSpansIncludingTheNumBuffersOfTheFirst() throws Exception {
        serve(MODERN | MRG_RXBUF);
        // The first chain: the header's first 10 bytes at the end of a page, num_buffers in a buffer
        // of its own on another page, then frame bytes on a third; the next chains are 300-byte
        // buffers 150 bytes before a page boundary, each on pages of its own.
        long first = pagesOfGuestMemory(6);
        List<Buffer[]> chains = new ArrayList<>();
        chains.add(postRx(Buffer.writable(first + PAGE - 10, 10), Buffer.writable(first + 2 * PAGE + 100, 2),
                Buffer.writable(first + 4 * PAGE + 200, 288)));
        for (int i = 0; i < 4; i++) {
            long at = pagesOfGuestMemory(3);
            chains.add(postRx(Buffer.writable(at + PAGE - 150, 300)));
        }
        // 12 + 800 bytes: 300 in the first chain, 300 in the second, 212 in the third; two are left.
        int[] usedLengths = {300, 300, 212};
        Set<Long> written = new TreeSet<>(), unwritten = new TreeSet<>();
        for (int i = 0; i < chains.size(); i++) {
            Set<Long> w = written(chains.get(i), i < usedLengths.length ? usedLengths[i] : 0);
            written.addAll(w);
            unwritten.addAll(minus(allPagesOf(chains.get(i)), w));
        }
        assertTrue(written.contains((first + 2 * PAGE) / PAGE), "num_buffers' page is among those written");
        assertEquals(4, unwritten.size(), "test layout: the two chains left have two pages each");
        assertApart(unwritten, written);
        int usedBefore = rig.rx(0).usedIdx();

        RxFrame r = receive(frame(800, 4));

        assertEquals(3, r.numBuffers(), "num_buffers, written into the first chain after the frame was spread");
        assertArrayEquals(usedLengths, r.usedLengths());
        assertMarked(union(written, rxUsed(usedBefore, usedBefore + 3)), unwritten);
    }

    // ---- where and when ----------------------------------------------------------------------------

    @Test
    void shouldMarkTheUsedRingAtTheAddressGivenWithVringFLog() throws Exception {
        serve(MODERN | MRG_RXBUF);
        // As QEMU does when migration starts: every ring again, with VHOST_VRING_F_LOG and the used
        // ring's guest address for the log. These differ from the real rings, on pages of their own.
        long logRings = pagesOfGuestMemory(4);
        rxLogGpa = logRings + PAGE - 4; // the used index on one page, the elements on the next
        txLogGpa = logRings + 3 * PAGE;
        for (DriverQueue q : List.of(rig.rx(0), rig.tx(0))) {
            long logAt = q == rig.rx(0) ? rxLogGpa : txLogGpa;
            assertEquals(0, rig.frontend.request(MessageType.SET_VRING_ADDR,
                    Payloads.vringAddr(q.index(), (int) VRING_F_LOG, q.descHva(), q.usedHva(), q.availHva(), logAt)));
        }
        long a = pagesOfGuestMemory(2);
        Buffer[] buffer = postRx(Buffer.writable(a + 64, 2048));
        Set<Long> realRings = union(usedRingPages(rig.rx(0)), usedRingPages(rig.tx(0)));
        clearLog(); // marks made before the switch
        int usedBefore = rig.rx(0).usedIdx();

        receive(frame(1000, 5));

        assertTrue(rxUsed(usedBefore, usedBefore + 1).containsAll(Set.of(rxLogGpa / PAGE, rxLogGpa / PAGE + 1)));
        assertMarked(union(written(buffer, HEADER + 1000), rxUsed(usedBefore, usedBefore + 1)),
                minus(realRings, pages(a, 2 * PAGE)));
    }

    @Test
    void shouldMarkNothingMoreOnceLogAllIsTurnedOff() throws Exception {
        serve(MODERN | MRG_RXBUF);
        long a = pagesOfGuestMemory(2);
        Buffer[] logged = postRx(Buffer.writable(a + PAGE - 50, 2048));
        int usedBefore = rig.rx(0).usedIdx();
        receive(frame(1000, 6));
        assertMarked(union(written(logged, HEADER + 1000), rxUsed(usedBefore, usedBefore + 1)), Set.of());

        logAll(false); // migration cancelled
        clearLog(); // after the ack: the queues already run without the log
        long b = pagesOfGuestMemory(2);
        postRx(Buffer.writable(b + PAGE - 50, 2048));
        for (int i = 0; i < 4; i++) {
            long at = pagesOfGuestMemory(2);
            postRx(Buffer.writable(at + PAGE - 50, 200));
        }
        RxFrame one = receive(frame(1500, 7));
        RxFrame merged = receive(frame(700, 8));

        assertEquals(1, one.numBuffers());
        assertEquals(4, merged.numBuffers());
        assertEquals(Set.of(), dirtyPages(), "nothing marked with LOG_ALL off");
    }
}
