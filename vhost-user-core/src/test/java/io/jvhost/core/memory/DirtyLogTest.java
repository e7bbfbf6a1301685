package io.jvhost.core.memory;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The dirty bitmap on its own: which pages a write of a given address and length marks, where
 * their bits are (bit {@code p % 64} of little-endian word {@code p / 64}), and that pages past
 * the end of the log are counted instead of written.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class DirtyLogTest {
    static final long PAGE = 4096;
    /** Bytes of bitmap the tests use: 16 words, 1024 pages. */
    static final int LOG_BYTES = 128;
    /** Bytes after the bitmap that must never be written. */
    static final int GUARD_BYTES = 64;

    private final Arena arena = Arena.ofConfined();
    private final MemorySegment backing = arena.allocate(LOG_BYTES + GUARD_BYTES, 8);
    private final DirtyLog log = new DirtyLog(backing.asSlice(0, LOG_BYTES));

    /** Every page whose bit is set, read byte by byte (page p is bit p % 8 of byte p / 8 in a little-endian word). */
    private Set<Long> dirtyPages() {
        Set<Long> pages = new TreeSet<>();
        for (int i = 0; i < LOG_BYTES; i++) {
            int b = Byte.toUnsignedInt(backing.get(ValueLayout.JAVA_BYTE, i));
            for (int bit = 0; bit < 8; bit++) {
                if ((b & (1 << bit)) != 0) {
                    pages.add(8L * i + bit);
                }
            }
        }
        return pages;
    }

    private void assertGuardUntouched() {
        for (int i = 0; i < GUARD_BYTES; i++) {
            assertEquals(0, backing.get(ValueLayout.JAVA_BYTE, LOG_BYTES + i), "byte " + i + " past the log written");
        }
    }

    @ParameterizedTest(name = "{0} bytes at 0x{1}")
    @CsvSource({
        "1, 0, 0, 0",
        "1, 0fff, 0, 0",
        "1, 1000, 1, 1",
        "2, 0fff, 0, 1",
        "4096, 0, 0, 0",
        "4096, 1, 0, 1",
        "4097, 0, 0, 1",
        "4097, 0fff, 0, 1",
        "4098, 0fff, 0, 2",
        "8192, 1000, 1, 2",
        "8193, 1000, 1, 3",
        "16384, 3f000, 63, 66",
        "8, 3ffff8, 1023, 1023"})
    void shouldMarkEveryPageTheRangeTouchesAndNoOther(long length, String gpaHex, long firstPage, long lastPage) {
        log.mark(Long.parseLong(gpaHex, 16), length);
        Set<Long> expected = new TreeSet<>();
        for (long p = firstPage; p <= lastPage; p++) {
            expected.add(p);
        }
        assertEquals(expected, dirtyPages());
        assertEquals(0, log.outOfRange());
        assertGuardUntouched();
    }

    @ParameterizedTest
    @CsvSource({"0, 0", "0, 1000", "-1, 1000", "-4096, 0"})
    void shouldMarkNothingForAnEmptyOrNegativeLength(long length, String gpaHex) {
        log.mark(Long.parseLong(gpaHex, 16), length);
        assertEquals(Set.of(), dirtyPages());
        assertEquals(0, log.outOfRange());
    }

    @Test
    void shouldPutPageBitsInLittleEndianWords() {
        log.mark(0, 1);
        log.mark(9 * PAGE, 1);
        log.mark(63 * PAGE, 1);
        log.mark(64 * PAGE, 1);
        log.mark(127 * PAGE + 5, 1);
        assertEquals(0x01, backing.get(ValueLayout.JAVA_BYTE, 0) & 0xFF, "page 0: bit 0 of byte 0");
        assertEquals(0x02, backing.get(ValueLayout.JAVA_BYTE, 1) & 0xFF, "page 9: bit 1 of byte 1");
        assertEquals(0x80, backing.get(ValueLayout.JAVA_BYTE, 7) & 0xFF, "page 63: top bit of word 0, in its last byte");
        assertEquals(0x01, backing.get(ValueLayout.JAVA_BYTE, 8) & 0xFF, "page 64: bit 0 of word 1");
        assertEquals(0x80, backing.get(ValueLayout.JAVA_BYTE, 15) & 0xFF, "page 127: top bit of word 1");
        assertEquals(Set.of(0L, 9L, 63L, 64L, 127L), dirtyPages());
    }

    @Test
    void shouldKeepBitsAlreadySetAndReportThemDirty() {
        log.mark(3 * PAGE, 1);
        log.mark(5 * PAGE, 1);
        log.mark(3 * PAGE + 100, 10);
        assertEquals(Set.of(3L, 5L), dirtyPages());
        assertTrue(log.isDirty(3 * PAGE));
        assertTrue(log.isDirty(5 * PAGE + PAGE - 1));
        assertFalse(log.isDirty(4 * PAGE));
        assertFalse(log.isDirty(6 * PAGE));
        assertFalse(log.isDirty(1024 * PAGE), "past the log: never dirty");
    }

    @Test
    void shouldCountPagesPastTheEndOfTheLogInsteadOfWritingThem() {
        long end = 8L * LOG_BYTES * PAGE; // first page with no bit
        log.mark(end - PAGE, 2 * PAGE); // last page in range, one past it
        assertEquals(Set.of(1023L), dirtyPages(), "the page in range is marked");
        assertEquals(1, log.outOfRange());

        log.mark(end, 1);
        log.mark(end + 64 * PAGE, PAGE);
        log.mark(1L << 50, 1);
        log.mark(Long.MIN_VALUE, 1); // unsigned: 2^63, far past any log
        assertEquals(5, log.outOfRange());
        assertEquals(Set.of(1023L), dirtyPages());
        assertGuardUntouched();
    }

    @Test
    void shouldCountEveryPageOfARangeThatRunsPastTheEnd() {
        long end = 8L * LOG_BYTES * PAGE;
        log.mark(end + 2 * PAGE, 3 * PAGE);
        assertEquals(3, log.outOfRange(), "three pages, none in the log");
        assertEquals(Set.of(), dirtyPages());
        assertGuardUntouched();
    }

    @Test
    void shouldCountEverythingWhenTheLogIsShorterThanAWord() {
        DirtyLog tiny = new DirtyLog(backing.asSlice(0, 4));
        tiny.mark(0, 1);
        assertEquals(1, tiny.outOfRange());
        assertEquals(Set.of(), dirtyPages(), "a partial word is never written");
    }

    @Test
    void shouldLoseNoBitWhenThreadsMarkPagesOfTheSameWordAtOnce() throws Exception {
        MemorySegment shared = Arena.ofAuto().allocate(8, 8);
        DirtyLog sharedLog = new DirtyLog(shared);
        int threads = 4;
        CyclicBarrier start = new CyclicBarrier(threads);
        Thread[] workers = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            int first = t;
            workers[t] = Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
                for (int page = first; page < 64; page += threads) {
                    sharedLog.mark(page * PAGE, 1);
                }
            });
        }
        for (Thread w : workers) {
            w.join();
        }
        assertEquals(-1L, shared.get(ValueLayout.JAVA_LONG, 0), "all 64 bits of the word set");
    }

    /** Every poller marks the one log of a session: pages past its end are counted from all at once. */
    @Test
    void shouldCountEveryPagePastTheEndWhenThreadsMarkAtOnce() throws Exception {
        DirtyLog sharedLog = new DirtyLog(Arena.ofAuto().allocate(8, 8)); // 64 pages
        int threads = 4, marks = 200_000;
        CyclicBarrier start = new CyclicBarrier(threads);
        Thread[] workers = new Thread[threads];
        for (int t = 0; t < threads; t++) {
            workers[t] = Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
                for (int i = 0; i < marks; i++) {
                    sharedLog.mark(64 * PAGE, 1);
                }
            });
        }
        for (Thread w : workers) {
            w.join();
        }
        assertEquals((long) threads * marks, sharedLog.outOfRange(), "pages past the end, counted by " + threads + " threads");
    }
}
