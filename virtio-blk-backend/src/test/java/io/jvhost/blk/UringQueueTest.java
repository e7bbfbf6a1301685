package io.jvhost.blk;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.sys.IoUring;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.IOERR;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The file store's io_uring queues: transfers that go on after a short one, submissions the kernel
 * refuses for now or for good, a completion ring that overflows, a queue stopping with I/O in the
 * ring, and what the store leaves behind when it closes.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class UringQueueTest {
    static final int DISK_BYTES = 1 << 20;

    @TempDir
    Path dir;
    private BlkRig rig;
    private byte[] contents;
    private Path image;

    @BeforeEach
    void needsIoUring() {
        TestDisk.assumeAvailable(TestDisk.Kind.FILE_URING);
    }

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    private FileStore store() throws Exception {
        contents = pattern(DISK_BYTES, 17);
        image = dir.resolve("disk.img");
        Files.write(image, contents);
        return new FileStore(image, false, false, 1, FileStore.IoEngine.URING);
    }

    private static UringQueue queue(BlkRig rig, int index) {
        for (UringQueue q : ((FileStore) rig.store).queues()) {
            if (q.index() == index) {
                return q;
            }
        }
        throw new AssertionError("no ring for queue " + index);
    }

    @Test
    void shouldSkipTheFilledIovecsAndShortenTheOneAShortTransferStoppedIn() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment iov = arena.allocate(4 * IoUring.IOVEC_SIZE, 8);
            long[] lengths = {100, 200, 300, 400};
            for (int i = 0; i < 4; i++) {
                iov.set(ValueLayout.JAVA_LONG, i * 16L, 10_000L * (i + 1));
                iov.set(ValueLayout.JAVA_LONG, i * 16L + 8, lengths[i]);
            }
            assertEquals(1, UringQueue.advance(iov, 0, 150), "the first iovec done");
            assertEquals(20_050L, iov.get(ValueLayout.JAVA_LONG, 16), "the second starts 50 bytes later");
            assertEquals(150L, iov.get(ValueLayout.JAVA_LONG, 24), "and is 50 bytes shorter");
            assertEquals(3, UringQueue.advance(iov, 1, 150 + 300), "exactly up to the fourth");
            assertEquals(40_000L, iov.get(ValueLayout.JAVA_LONG, 48), "the fourth untouched");
            assertEquals(400L, iov.get(ValueLayout.JAVA_LONG, 56));
            assertEquals(4, UringQueue.advance(iov, 3, 400), "all done");
        }
    }

    @Test
    void shouldGoOnFromWhereEachShortTransferStopped() throws Exception {
        FileStore store = store();
        rig = BlkRig.serve(store, 1).start();
        UringQueue q = queue(rig, 0);
        q.iovMax = 1; // the kernel gets one iovec at a time: every multi-segment transfer comes back short

        Area a = rig.area(16 * 1024);
        byte[] data = pattern(8 * SECTOR, 3);
        Buffer[] write = new Buffer[10];
        write[0] = Buffer.readable(a.header(OUT, 100), 16);
        for (int i = 0; i < 8; i++) {
            write[1 + i] = Buffer.readable(a.put(Arrays.copyOfRange(data, i * SECTOR, (i + 1) * SECTOR)), SECTOR);
        }
        write[9] = Buffer.writable(a.status(), 1);
        long before = q.operations;
        assertEquals(new Completion(1, OK), rig.run(write));
        assertEquals(before + 8, q.operations, "eight WRITEVs of one iovec each");

        Buffer[] read = new Buffer[10];
        read[0] = Buffer.readable(a.header(IN, 100), 16);
        long[] at = new long[8];
        for (int i = 0; i < 8; i++) {
            at[i] = a.room(SECTOR);
            read[1 + i] = Buffer.writable(at[i], SECTOR);
        }
        read[9] = Buffer.writable(a.status(), 1);
        assertEquals(new Completion(8 * SECTOR + 1, OK), rig.run(read));
        for (int i = 0; i < 8; i++) {
            assertArrayEquals(Arrays.copyOfRange(data, i * SECTOR, (i + 1) * SECTOR), a.read(at[i], SECTOR), "piece " + i);
        }
        System.arraycopy(data, 0, contents, 100 * SECTOR, data.length);
        assertArrayEquals(contents, Files.readAllBytes(image));
    }

    @ParameterizedTest(name = "errno {0}")
    @ValueSource(ints = {UringQueue.EAGAIN, UringQueue.ENOMEM, UringQueue.EBUSY, UringQueue.EINTR})
    void shouldSubmitAgainWhenTheKernelRefusesASubmissionForNow(int errno) throws Exception {
        rig = BlkRig.serve(store(), 1).start();
        UringQueue q = queue(rig, 0);
        q.failErrno = errno;
        q.failEnters = 5;

        byte[] data = pattern(4096, errno);
        rig.write(0, 8, data);
        assertArrayEquals(data, rig.read(0, 8, 4096));
        assertEquals(0, q.failEnters, "every injected failure was met");
        assertTrue(q.submitFailures >= 5, "failures counted: " + q.submitFailures);
        assertEquals(0, q.requestsInFlight());
    }

    @Test
    void shouldFailOnlyTheRequestsWhoseSubmissionTheKernelRefusesForGood() throws Exception {
        rig = BlkRig.serve(store(), 1).start();
        UringQueue q = queue(rig, 0);
        q.failErrno = 22; // EINVAL: a bug, not a shortage
        q.failEnters = 1;

        assertEquals(new Completion(1, IOERR), rig.transfer(0, IN, 16, 4096), "the refused read fails");
        assertEquals(0, q.requestsInFlight(), "its slot is free again");
        q.failEnters = 1;
        assertEquals(new Completion(1, IOERR), rig.ranges(BlkRig.WRITE_ZEROES, new long[] {0, 8, 0}, new long[] {64, 8, 0},
                new long[] {128, 8, 0}), "three refused FALLOCATEs fail their request once");
        assertEquals(0, q.requestsInFlight());
        assertArrayEquals(Arrays.copyOfRange(contents, 16 * SECTOR, 16 * SECTOR + 4096), rig.read(0, 16, 4096),
                "the next one is served");
    }

    @Test
    void shouldCompleteEveryRequestWhenMoreFinishThanTheCompletionRingHolds() throws Exception {
        FileStore store = store();
        store.ringEntries = 4; // 8 completion entries
        rig = BlkRig.serve(store, 1).start();
        UringQueue q = queue(rig, 0);
        q.maxOps = 1 << 16; // let far more than 8 be in flight: the ring overflows, the kernel keeps the rest

        // Every chain's descriptors fit the table at once (the driver never rewrites one the device
        // has not taken yet), and the poller wakes to all of them: a batch of 64 reads (its budget), each
        // finished in the page cache as it is submitted, far more than the completion ring holds.
        DriverQueue dq = rig.queue(0);
        int n = (dq.size() - 1) / 3;
        List<long[]> posted = new ArrayList<>(); // head, data gpa, sector
        for (int i = 0; i < n; i++) {
            Area a = rig.area(SECTOR + 512);
            long sector = (i * 37L) % (DISK_BYTES / SECTOR);
            long data = a.room(SECTOR);
            int head = dq.chain(Buffer.readable(a.header(IN, sector), 16), Buffer.writable(data, SECTOR),
                    Buffer.writable(a.status(), 1));
            dq.makeAvailable(head);
            posted.add(new long[] {head, data, sector});
        }
        dq.kick();
        Map<Integer, Integer> used = rig.awaitAll(0, n);
        for (long[] p : posted) {
            assertEquals(SECTOR + 1, used.get((int) p[0]), "used length of chain " + p[0]);
            int from = (int) p[2] * SECTOR;
            assertArrayEquals(Arrays.copyOfRange(contents, from, from + SECTOR),
                    rig.ram.at(p[1], SECTOR).toArray(ValueLayout.JAVA_BYTE), "sector " + p[2]);
        }
        assertTrue(q.overflows > 0, "the completion ring overflowed at least once");
        assertEquals(0, q.requestsInFlight());
    }

    @Test
    void shouldAcknowledgeAQueueStopOnlyOnceItsIoLeftTheRingWhileTheOtherQueueServesOn() throws Exception {
        rig = BlkRig.serve(store(), 2, new BackendOptions(IdleMode.EVENT, new int[][] {{0, 1}})).start();
        assertSame(rig.backend.poller(0), rig.backend.poller(1), "both queues on one poller");
        UringQueue q0 = queue(rig, 0);
        rig.read(0, 0, 4096);
        rig.read(0, 8, 4096); // queue 0 has taken two requests

        q0.failErrno = UringQueue.EAGAIN;
        q0.failEnters = Integer.MAX_VALUE; // the next read stays in queue 0's ring
        Area a = rig.area(4096 + 512);
        long data = a.room(4096), status = a.status();
        int slow = rig.post(0, Buffer.readable(a.header(IN, 1024), 16), Buffer.writable(data, 4096), Buffer.writable(status, 1));
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (q0.failEnters == Integer.MAX_VALUE && System.nanoTime() < deadline) {
            Thread.onSpinWait(); // until the poller tried to submit it
        }
        assertTrue(q0.failEnters < Integer.MAX_VALUE, "the read reached the ring");

        CompletableFuture<Integer> base = CompletableFuture.supplyAsync(() -> {
            try {
                return rig.frontend.getVringBase(0);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        });
        for (int i = 0; i < 20; i++) {
            long sector = 16L * i;
            assertArrayEquals(Arrays.copyOfRange(contents, (int) sector * SECTOR, (int) sector * SECTOR + 4096),
                    rig.read(1, sector, 4096), "queue 1 serves read " + i + " while queue 0 stops");
        }
        assertFalse(base.isDone(), "queue 0's stop waits for the read in its ring");

        q0.failEnters = 0; // the kernel takes it now

        assertEquals(3, base.get(10, TimeUnit.SECONDS), "base: the three requests queue 0 took");
        assertEquals(Map.of(slow, 4096 + 1), rig.awaitAll(0, 1), "the held read completed on queue 0");
        assertEquals(OK, rig.ram.at(status, 1).get(ValueLayout.JAVA_BYTE, 0));
        assertArrayEquals(Arrays.copyOfRange(contents, 1024 * SECTOR, 1024 * SECTOR + 4096), a.read(data, 4096));
        assertEquals(0, q0.requestsInFlight());
    }

    @Test
    void shouldCloseItsRingsAndEventFdsWithTheStore() throws Exception {
        Map<Integer, String> before = OpenFds.snapshot();
        FileStore store = store();
        try (BlkRig r = BlkRig.serve(store, 3).start()) {
            assertEquals(3, store.queues().size(), "a ring per queue");
            r.write(2, 0, pattern(4096, 1));
        }
        Map<Integer, String> after = OpenFds.snapshot();
        after.keySet().removeAll(before.keySet());
        assertTrue(after.values().stream().noneMatch(v -> v.contains("io_uring") || v.contains("eventfd") || v.contains("disk.img")),
                "fds left open: " + after);
    }
}
