package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** The io_uring binding against the running kernel: rings, the operations the file store uses, overflow, eventfd. */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class IoUringTest {
    @TempDir
    Path dir;

    @BeforeEach
    void needsIoUring() {
        // CI machines run a kernel with io_uring; say loudly when one does not.
        String why = IoUring.unavailableReason();
        if (why != null) {
            System.err.println("IoUringTest SKIPPED: io_uring unavailable: " + why);
        }
        assumeTrue(why == null, "io_uring unavailable: " + why);
    }

    private static byte[] pattern(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) {
            b[i] = (byte) (seed * 31 + i * 7 + (i >>> 8));
        }
        return b;
    }

    @Test
    void shouldWriteAndReadAFileThroughIovecsAndSignalItsEventFd() throws Exception {
        Path file = dir.resolve("f");
        Files.write(file, new byte[16384]);
        try (Arena arena = Arena.ofConfined(); IoUring ring = IoUring.open(8); Fd ev = EventFd.create()) {
            assertEquals(0, ring.registerEventFd(ev.get()));
            int fd = (int) LibC.check(FileCalls.open(file.toString(), FileCalls.O_RDWR | FileCalls.O_CLOEXEC), "open");
            try {
                byte[] data = pattern(8192, 3);
                MemorySegment buf = arena.allocate(8192, 4096);
                buf.copyFrom(MemorySegment.ofArray(data));
                MemorySegment iov = arena.allocate(2 * IoUring.IOVEC_SIZE, 8);
                // Two iovecs, the halves swapped: the file gets the second half first.
                iov.set(ValueLayout.JAVA_LONG, 0, buf.address() + 4096);
                iov.set(ValueLayout.JAVA_LONG, 8, 4096L);
                iov.set(ValueLayout.JAVA_LONG, 16, buf.address());
                iov.set(ValueLayout.JAVA_LONG, 24, 4096L);
                assertTrue(ring.prepare(IoUring.OP_WRITEV, fd, 4096, iov.address(), 2, 0, 77));
                assertEquals(1, ring.submitAndWait(1));
                assertEquals(1, ring.ready());
                assertEquals(77, ring.completionUserData(0));
                assertEquals(8192, ring.completionResult(0));
                ring.consume(1);
                assertTrue(LibC.eventfdDrain(ev.get()) >= 1, "the registered eventfd was signalled");

                assertTrue(ring.prepare(IoUring.OP_FSYNC, fd, 0, 0, 0, IoUring.FSYNC_DATASYNC, 78));
                assertEquals(1, ring.submitAndWait(1));
                assertEquals(0, ring.completionResult(0));
                ring.consume(1);

                byte[] onDisk = Files.readAllBytes(file);
                assertArrayEquals(Arrays.copyOfRange(data, 4096, 8192), Arrays.copyOfRange(onDisk, 4096, 8192));
                assertArrayEquals(Arrays.copyOfRange(data, 0, 4096), Arrays.copyOfRange(onDisk, 8192, 12288));

                MemorySegment back = arena.allocate(8192, 4096);
                iov.set(ValueLayout.JAVA_LONG, 0, back.address());
                iov.set(ValueLayout.JAVA_LONG, 8, 8192L);
                assertTrue(ring.prepare(IoUring.OP_READV, fd, 4096, iov.address(), 1, 0, 79));
                assertEquals(1, ring.submitAndWait(1));
                assertEquals(8192, ring.completionResult(0));
                ring.consume(1);
                assertArrayEquals(Arrays.copyOfRange(onDisk, 4096, 12288), back.toArray(ValueLayout.JAVA_BYTE));
            } finally {
                LibC.close(fd);
            }
        }
    }

    @Test
    void shouldReturnAShortReadAtTheEndOfTheFileAndNothingPastIt() throws Exception {
        Path file = dir.resolve("short");
        Files.write(file, pattern(6000, 5));
        try (Arena arena = Arena.ofConfined(); IoUring ring = IoUring.open(4)) {
            int fd = (int) LibC.check(FileCalls.open(file.toString(), FileCalls.O_RDONLY | FileCalls.O_CLOEXEC), "open");
            try {
                MemorySegment buf = arena.allocate(8192, 8);
                MemorySegment iov = arena.allocate(IoUring.IOVEC_SIZE, 8);
                iov.set(ValueLayout.JAVA_LONG, 0, buf.address());
                iov.set(ValueLayout.JAVA_LONG, 8, 4096L);
                ring.prepare(IoUring.OP_READV, fd, 4096, iov.address(), 1, 0, 1);
                ring.prepare(IoUring.OP_READV, fd, 8192, iov.address(), 1, 0, 2);
                assertEquals(2, ring.submitAndWait(2));
                int[] results = new int[3];
                for (int i = 0; i < 2; i++) {
                    results[(int) ring.completionUserData(i)] = ring.completionResult(i);
                }
                ring.consume(2);
                assertEquals(6000 - 4096, results[1], "a short read up to the end of the file");
                assertEquals(0, results[2], "nothing past the end");
            } finally {
                LibC.close(fd);
            }
        }
    }

    @Test
    void shouldZeroAndPunchRangesWithFallocate() throws Exception {
        Path file = dir.resolve("fa");
        Files.write(file, pattern(16384, 9));
        try (IoUring ring = IoUring.open(4)) {
            int fd = (int) LibC.check(FileCalls.open(file.toString(), FileCalls.O_RDWR | FileCalls.O_CLOEXEC), "open");
            try {
                int keep = FileCalls.FALLOC_FL_KEEP_SIZE;
                // FALLOCATE: length in addr, mode in len.
                ring.prepare(IoUring.OP_FALLOCATE, fd, 0, 4096, FileCalls.FALLOC_FL_PUNCH_HOLE | keep, 0, 1);
                assertEquals(1, ring.submitAndWait(1));
                int punched = ring.completionResult(0);
                ring.consume(1);
                ring.prepare(IoUring.OP_FALLOCATE, fd, 8192, 4096, FileCalls.FALLOC_FL_ZERO_RANGE | keep, 0, 2);
                assertEquals(1, ring.submitAndWait(1));
                int zeroed = ring.completionResult(0);
                ring.consume(1);
                byte[] onDisk = Files.readAllBytes(file);
                assertEquals(16384, onDisk.length, "size kept");
                if (punched == 0) {
                    assertArrayEquals(new byte[4096], Arrays.copyOfRange(onDisk, 0, 4096));
                } else {
                    assertEquals(-LibC.EOPNOTSUPP, punched);
                }
                if (zeroed == 0) {
                    assertArrayEquals(new byte[4096], Arrays.copyOfRange(onDisk, 8192, 12288));
                } else {
                    assertEquals(-LibC.EOPNOTSUPP, zeroed);
                }
                assertArrayEquals(Arrays.copyOfRange(pattern(16384, 9), 4096, 8192), Arrays.copyOfRange(onDisk, 4096, 8192));
            } finally {
                LibC.close(fd);
            }
        }
    }

    @Test
    void shouldKeepEveryCompletionWhenMoreFinishThanTheCompletionRingHolds() throws Exception {
        try (IoUring ring = IoUring.open(4)) {
            int total = 4 * ring.cqEntries() + 3;
            int submitted = 0;
            while (submitted < total) {
                while (submitted < total && ring.prepare(IoUring.OP_NOP, -1, 0, 0, 0, 0, 1000 + submitted)) {
                    submitted++;
                }
                int r = ring.submit();
                assertTrue(r > 0, "submit: " + r);
            }
            assertTrue(ring.overflowed(), "more completions than the ring holds: the kernel keeps the rest aside");
            Set<Long> seen = new HashSet<>();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (seen.size() < total && System.nanoTime() < deadline) {
                int n = ring.ready();
                for (int i = 0; i < n; i++) {
                    assertEquals(0, ring.completionResult(i));
                    assertTrue(seen.add(ring.completionUserData(i)), "completion seen twice");
                }
                ring.consume(n);
                if (ring.overflowed()) {
                    assertEquals(0, ring.flushOverflow());
                }
            }
            assertEquals(total, seen.size(), "every completion arrived");
            assertFalse(ring.overflowed());
            assertEquals(0, ring.overflowCount(), "none lost");
            assertEquals(0, ring.ready());
        }
    }

    @Test
    void shouldTakeBackSubmissionsNotYetGivenToTheKernel() throws Exception {
        try (IoUring ring = IoUring.open(4)) {
            assertEquals(ring.sqEntries(), ring.sqFree());
            assertTrue(ring.prepare(IoUring.OP_NOP, -1, 0, 0, 0, 0, 5));
            assertTrue(ring.prepare(IoUring.OP_NOP, -1, 0, 0, 0, 0, 6));
            assertEquals(2, ring.unsubmitted());
            assertEquals(5, ring.unsubmittedUserData(0));
            assertEquals(6, ring.unsubmittedUserData(1));
            ring.discardUnsubmitted();
            assertEquals(0, ring.unsubmitted());
            assertEquals(0, ring.submit(), "nothing left to submit");
            assertTrue(ring.prepare(IoUring.OP_NOP, -1, 0, 0, 0, 0, 7));
            assertEquals(1, ring.submitAndWait(1));
            assertEquals(1, ring.ready());
            assertEquals(7, ring.completionUserData(0));
            ring.consume(1);
        }
    }

    @Test
    void shouldRefuseToPrepareMoreThanTheSubmissionRingHolds() throws Exception {
        try (IoUring ring = IoUring.open(4)) {
            for (int i = 0; i < ring.sqEntries(); i++) {
                assertTrue(ring.prepare(IoUring.OP_NOP, -1, 0, 0, 0, 0, i));
            }
            assertFalse(ring.prepare(IoUring.OP_NOP, -1, 0, 0, 0, 0, 99));
            assertEquals(ring.sqEntries(), ring.submit());
            assertEquals(ring.sqEntries(), ring.sqFree());
        }
    }
}
