package io.jvhost.blk;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.DirtyPages;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.OpenFds.Probe;
import io.jvhost.testkit.Traffic;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import static io.jvhost.blk.BlkRig.GET_ID;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.IOERR;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.UNWRITTEN;
import static io.jvhost.blk.BlkRig.headerBytes;
import static io.jvhost.blk.BlkRig.pattern;
import static io.jvhost.testkit.DirtyPages.PAGE;
import static io.jvhost.testkit.DirtyPages.intersection;
import static io.jvhost.testkit.DirtyPages.minus;
import static io.jvhost.testkit.DirtyPages.pages;
import static io.jvhost.testkit.DirtyPages.union;
import static io.jvhost.testkit.DirtyPages.usedElementPages;
import static io.jvhost.testkit.DirtyPages.usedRingGpa;
import static io.jvhost.testkit.DirtyPages.usedRingPages;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Live migration of a disk: with VHOST_F_LOG_ALL on and a log given with SET_LOG_BASE, a read
 * marks the pages its data went to and the status byte's page, a write only the status byte's
 * page (the guest's data was only read), GET_ID its buffer; the used ring is marked each time.
 * Against a RAM disk, which completes inline on the poller, and an image file on io_uring (the
 * poller reaps the ring) and on the threads engine (I/O workers complete on their own threads).
 *
 * <p>Every buffer lies on pages of its own, so a page is either written or not.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class BlkSimulatorDirtyLogTest {
    static final long LOG_ALL = 1L << 26, PROTOCOL_FEATURES = 1L << 30;
    /** One page of log covers 128 MiB of guest memory, more than the rig's 32 MiB. */
    static final int LOG_SIZE = 4096;
    static final int DISK_BYTES = 1 << 20;
    static final int QUEUE_SIZE = 64;

    enum Store { RAM, FILE_URING, FILE_THREADS, FILE_INLINE }

    @TempDir
    Path dir;
    private BlkRig rig;
    private Probe log;
    /** What the disk holds: a pattern, so a read shows it landed. */
    private final byte[] disk = pattern(DISK_BYTES, 42);

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
        if (log != null) {
            log.close();
        }
    }

    /** Serves {@code kind} of store with {@code queues} queues, gives it a log and turns LOG_ALL on. */
    private void serve(Store kind, int queues) throws Exception {
        BlockStore store;
        if (kind == Store.RAM) {
            RamStore ram = new RamStore(DISK_BYTES);
            ram.contents().copyFrom(java.lang.foreign.MemorySegment.ofArray(disk));
            store = ram;
        } else {
            Path image = dir.resolve("disk.img");
            Files.write(image, disk);
            TestDisk.Kind k = TestDisk.Kind.valueOf(kind.name());
            TestDisk.assumeAvailable(k);
            store = new FileStore(image, false, false, 2, k.engine());
        }
        rig = BlkRig.serve(store, queues);
        assertTrue((rig.offered & LOG_ALL) != 0, "VHOST_F_LOG_ALL offered");
        long features = rig.offered & ~LOG_ALL;
        rig.start(features, QUEUE_SIZE);
        log = OpenFds.probe(LOG_SIZE);
        DirtyPages.setLogBase(rig.frontend, log.fd(), LOG_SIZE);
        assertEquals(0, rig.frontend.setFeatures(features | PROTOCOL_FEATURES | LOG_ALL));
    }

    private Set<Long> dirtyPages() {
        return DirtyPages.read(log.fd(), LOG_SIZE);
    }

    /** Fresh guest pages for a test's buffers, filled with a pattern no request writes. */
    private long pagesOfGuestMemory(int count) {
        long gpa = rig.ram.allocate(count * PAGE, PAGE);
        rig.ram.at(gpa, count * PAGE).fill(UNWRITTEN);
        return gpa;
    }

    private long put(long gpa, byte[] data) {
        rig.ram.at(gpa, data.length).copyFrom(java.lang.foreign.MemorySegment.ofArray(data));
        return gpa;
    }

    private byte[] bytesAt(long gpa, int length) {
        return rig.ram.at(gpa, length).toArray(ValueLayout.JAVA_BYTE);
    }

    private int statusAt(long gpa) {
        return Byte.toUnsignedInt(rig.ram.at(gpa, 1).get(ValueLayout.JAVA_BYTE, 0));
    }

    /**
     * Runs one chain on queue {@code q} to its completion and until every store and mark of it is
     * done; returns its used length and the pages of the used elements and index it published.
     */
    private Set<Long> run(int q, int expectUsedLength, Buffer... buffers) throws IOException {
        DriverQueue dq = rig.queue(q);
        int before = dq.usedIdx();
        int head = dq.post(buffers);
        Used used = dq.awaitUsed(BlkRig.USED_TIMEOUT);
        assertNotNull(used, "no completion within " + BlkRig.USED_TIMEOUT);
        assertEquals(new Used(head, expectUsedLength), used);
        Traffic.quiesce(rig.frontend, dq);
        return usedElementPages(dq, usedRingGpa(dq), before, dq.usedIdx());
    }

    /**
     * Asserts the log holds every page in {@code mustBeMarked}, nothing in {@code mustNotBeMarked},
     * and nothing else but pages of the used rings (where the device may also have written the
     * notification-suppression fields).
     */
    private void assertMarked(Set<Long> mustBeMarked, Set<Long> mustNotBeMarked) {
        Set<Long> rings = new TreeSet<>();
        for (int q = 0; q < rig.handlers.length; q++) {
            rings.addAll(usedRingPages(rig.queue(q)));
        }
        assertEquals(Set.of(), intersection(mustNotBeMarked, union(rings, mustBeMarked)), "test layout");
        Set<Long> dirty = dirtyPages();
        assertEquals(Set.of(), minus(mustBeMarked, dirty), "pages the device wrote but did not mark");
        assertEquals(Set.of(), intersection(mustNotBeMarked, dirty), "pages the device did not write");
        assertEquals(Set.of(), minus(minus(dirty, mustBeMarked), rings), "pages marked that the device did not write");
    }

    @ParameterizedTest
    @EnumSource(Store.class)
    void shouldMarkTheDataPagesAndTheStatusPageOfAReadButNotItsHeader(Store kind) throws Exception {
        serve(kind, 1);
        long header = put(pagesOfGuestMemory(1), headerBytes(IN, 8));
        // 4 KiB from 512 bytes before a page boundary, then 1 KiB across another: four pages written.
        long a = pagesOfGuestMemory(2), b = pagesOfGuestMemory(2);
        long data1 = a + PAGE - 512, data2 = b + PAGE - 512;
        long status = pagesOfGuestMemory(1) + 100;

        Set<Long> used = run(0, 4096 + 1024 + 1, Buffer.readable(header, 16), Buffer.writable(data1, 4096),
                Buffer.writable(data2, 1024), Buffer.writable(status, 1));

        assertEquals(OK, statusAt(status));
        assertArrayEquals(Arrays.copyOfRange(disk, 8 * SECTOR, 8 * SECTOR + 4096), bytesAt(data1, 4096));
        assertArrayEquals(Arrays.copyOfRange(disk, 8 * SECTOR + 4096, 8 * SECTOR + 5120), bytesAt(data2, 1024));
        assertMarked(union(pages(data1, 4096), pages(data2, 1024), pages(status, 1), used), pages(header, 16));
    }

    @ParameterizedTest
    @EnumSource(Store.class)
    void shouldMarkOnlyTheStatusPageAndTheUsedRingForAWrite(Store kind) throws Exception {
        serve(kind, 1);
        long header = put(pagesOfGuestMemory(1), headerBytes(OUT, 16));
        long data = put(pagesOfGuestMemory(3) + PAGE - 512, pattern(8192, 7));
        long status = pagesOfGuestMemory(1) + PAGE - 1;

        Set<Long> used = run(0, 1, Buffer.readable(header, 16), Buffer.readable(data, 8192), Buffer.writable(status, 1));

        assertEquals(OK, statusAt(status));
        assertMarked(union(pages(status, 1), used), union(pages(header, 16), pages(data, 8192)));
        assertArrayEquals(pattern(8192, 7), rig.read(0, 16, 8192), "the write reached the disk");
    }

    @ParameterizedTest
    @EnumSource(Store.class)
    void shouldMarkTheBufferGetIdFills(Store kind) throws Exception {
        serve(kind, 1);
        long header = put(pagesOfGuestMemory(1), headerBytes(GET_ID, 0));
        long id = pagesOfGuestMemory(2) + PAGE - 10; // 20 bytes across a page boundary
        long status = pagesOfGuestMemory(1);

        Set<Long> used = run(0, 21, Buffer.readable(header, 16), Buffer.writable(id, 20), Buffer.writable(status, 1));

        assertEquals(OK, statusAt(status));
        String name = rig.store.id();
        assertArrayEquals(Arrays.copyOf(name.getBytes(StandardCharsets.US_ASCII), 20), bytesAt(id, 20));
        assertMarked(union(pages(id, 20), pages(status, 1), used), pages(header, 16));
    }

    @ParameterizedTest
    @EnumSource(Store.class)
    void shouldMarkOnlyTheStatusPageOfAReadRefusedForItsRange(Store kind) throws Exception {
        serve(kind, 1);
        long header = put(pagesOfGuestMemory(1), headerBytes(IN, DISK_BYTES / SECTOR - 1));
        long data = pagesOfGuestMemory(1);
        long status = pagesOfGuestMemory(1);

        Set<Long> used = run(0, 1, Buffer.readable(header, 16), Buffer.writable(data, 1024), Buffer.writable(status, 1));

        assertEquals(IOERR, statusAt(status));
        assertMarked(union(pages(status, 1), used), union(pages(header, 16), pages(data, 1024)));
    }

    /**
     * Two queues on two pollers complete reads into alternate pages of the same 64-page stretch
     * (the same words of the log) at once: a mark that is not atomic would lose the other's bits.
     */
    @ParameterizedTest
    @EnumSource(Store.class)
    void shouldKeepEveryMarkWhenTwoQueuesMarkTheSameLogWordsAtOnce(Store kind) throws Exception {
        serve(kind, 2);
        int rounds = 4, perQueue = 16;
        Set<Long> expected = new TreeSet<>();
        for (int round = 0; round < rounds; round++) {
            long stretch = pagesOfGuestMemory(2 * perQueue);
            long[][] status = new long[2][perQueue];
            List<Set<Integer>> heads = List.of(new HashSet<>(), new HashSet<>());
            for (int i = 0; i < perQueue; i++) {
                for (int q = 0; q < 2; q++) {
                    long page = stretch + (2L * i + q) * PAGE; // queue 0 the even pages, queue 1 the odd ones
                    long header = put(rig.ram.allocate(16, 16), headerBytes(IN, i));
                    status[q][i] = page + SECTOR; // in the page it reads into: one page per request
                    rig.ram.at(status[q][i], 1).set(ValueLayout.JAVA_BYTE, 0, UNWRITTEN);
                    heads.get(q).add(rig.queue(q).post(Buffer.readable(header, 16), Buffer.writable(page, SECTOR),
                            Buffer.writable(status[q][i], 1)));
                    expected.add(page / PAGE);
                }
            }
            for (int q = 0; q < 2; q++) {
                for (int i = 0; i < perQueue; i++) {
                    Used u = rig.queue(q).awaitUsed(BlkRig.USED_TIMEOUT);
                    assertNotNull(u, "read " + i + " of queue " + q + " completed");
                    assertTrue(heads.get(q).remove(u.id()), "completed once, on its queue");
                }
                Traffic.quiesce(rig.frontend, rig.queue(q));
            }
            for (int q = 0; q < 2; q++) {
                for (int i = 0; i < perQueue; i++) {
                    assertEquals(OK, statusAt(status[q][i]));
                }
            }
        }
        assertEquals(Set.of(), minus(expected, dirtyPages()), "pages read into but not marked");
    }
}
