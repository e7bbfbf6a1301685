package io.jvhost.perf;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.PrimitiveIterator;
import java.util.concurrent.TimeUnit;
import java.util.stream.LongStream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link CpuTime}: utime and stime read out of {@code /proc} stat lines as Linux writes them (also
 * when the command name holds spaces and parentheses), converted from 100 Hz ticks, summed over
 * threads, and divided into CPU time per packet or request; and both meters follow real CPU use.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class CpuTimeTest {
    /** /proc/PID/stat of a dpdk-testpmd forwarding at full speed: utime 4321, stime 123 (fields 14, 15). */
    static final String TESTPMD_STAT = "12345 (dpdk-testpmd) R 12300 12345 12300 34816 12345 4194560 3125 0 0 0 4321 123 0 0"
            + " 20 0 6 0 987654 2300000000 12000 18446744073709551615 1 1 0 0 0 0 0 4096 1260 0 0 0 17 1 0 0 0 0 0\n";

    @Test
    void shouldAddUtimeAndStimeOfAProcStatLine() {
        assertEquals(4321 + 123, CpuTime.statTicks(TESTPMD_STAT));
    }

    @Test
    void shouldFindTheFieldsAfterACommandNameWithSpacesAndParentheses() {
        String stat = TESTPMD_STAT.replace("(dpdk-testpmd)", "(a) b (c) 1 2 3)");
        assertEquals(4321 + 123, CpuTime.statTicks(stat));
    }

    @Test
    void shouldRefuseLinesThatAreNotProcStat() {
        assertThrows(IllegalArgumentException.class, () -> CpuTime.statTicks("no parentheses 1 2 3"));
        assertThrows(IllegalArgumentException.class, () -> CpuTime.statTicks("1 (x) R 1 2 3"));
        assertThrows(IllegalArgumentException.class, () -> CpuTime.statTicks(TESTPMD_STAT.replace(" 4321 ", " many ")));
    }

    @Test
    void shouldConvertHundredHertzTicksToNanoseconds() {
        assertEquals(10_000_000L, CpuTime.ticksToNanos(1));
        assertEquals(44_440_000_000L, CpuTime.ticksToNanos(4321 + 123));
    }

    @Test
    void shouldDivideCpuTimeByTheWorkDoneAndSayNothingWithoutEither() {
        assertEquals(62.5, CpuTime.perUnit(1_000_000_000L, 16_000_000L));
        assertTrue(Double.isNaN(CpuTime.perUnit(-1, 1000)), "unknown CPU time");
        assertTrue(Double.isNaN(CpuTime.perUnit(5_000, 0)), "no packets");
    }

    @Test
    void shouldTurnCpuTimeOverWallTimeIntoCoresAndCoresAtARateIntoNanosecondsPerPacket() {
        assertEquals(0.5, CpuTime.cores(1_500_000_000L, 3_000_000_000L));
        assertEquals(50.0, CpuTime.perPacket(1.0, 20.0), "one busy core at 20 Mpps: 50 ns a packet");
        assertEquals(25.0, CpuTime.perPacket(0.5, 20.0), "an event-mode poller busy half the time");
        assertTrue(Double.isNaN(CpuTime.cores(-1, 1_000)), "unknown CPU time");
        assertTrue(Double.isNaN(CpuTime.cores(5, 0)), "no time passed");
        assertTrue(Double.isNaN(CpuTime.perPacket(Double.NaN, 20.0)));
        assertTrue(Double.isNaN(CpuTime.perPacket(1.0, Double.NaN)), "no rate measured");
        assertTrue(Double.isNaN(CpuTime.perPacket(1.0, 0)), "no packets");
    }

    @Test
    void shouldSumThreadTimesUnlessOneOfThemIsUnknown() {
        assertEquals(600, CpuTime.sum(new long[] {100, 200, 300}));
        assertEquals(-1, CpuTime.sum(new long[] {100, -1, 300}));
        assertEquals(0, CpuTime.sum(new long[0]));
    }

    @Test
    void shouldMeasureTheDifferenceBetweenTheReadingsAtTheStartAndEndOfAWindow() {
        PrimitiveIterator.OfLong readings = LongStream.of(7_000, 1_007_000).iterator();
        CpuTime.Window w = new CpuTime.Window(readings::nextLong);
        w.begin();
        w.end();
        assertEquals(1_000_000, w.nanos());
        assertEquals(100.0, w.per(10_000));

        PrimitiveIterator.OfLong gone = LongStream.of(7_000, -1).iterator();
        CpuTime.Window lost = new CpuTime.Window(gone::nextLong);
        lost.begin();
        lost.end();
        assertEquals(-1, lost.nanos(), "the process ended within the window");
        assertTrue(Double.isNaN(lost.per(10_000)));
    }

    @Test
    void shouldReadThisProcesssStatFileAndSeeItsCpuTimeGrowWhileItSpins() throws Exception {
        long pid = ProcessHandle.current().pid();
        CpuTime.statTicks(Files.readString(Path.of("/proc", Long.toString(pid), "stat"))); // parses the real thing
        CpuTime.Meter process = CpuTime.process(pid);
        long before = process.nanos();
        long spun = spinOnThisThread(300_000_000L);
        long grown = process.nanos() - before;
        // The process's time includes this thread's; 10 ms ticks, sampled by the kernel: allow two.
        assertTrue(grown >= spun - 20_000_000L, "process CPU grew " + grown + " ns while this thread spun " + spun);
    }

    @Test
    void shouldSayUnknownForAProcessThatDoesNotExist() {
        assertEquals(-1, CpuTime.process(Integer.MAX_VALUE + 1L).nanos());
    }

    @Test
    void shouldSumTheCpuTimeOfTheThreadsWithTheGivenNames() throws Exception {
        Thread t = Thread.currentThread();
        String name = t.getName();
        t.setName("cpu-time-test-poller-0");
        try {
            CpuTime.Meter threads = CpuTime.threads("-test-poller-");
            long before = threads.nanos();
            long spun = spinOnThisThread(100_000_000L);
            long grown = threads.nanos() - before;
            assertTrue(grown >= spun && grown < spun + 50_000_000L, "thread CPU grew " + grown + " ns, spun " + spun);
            assertEquals(-1, CpuTime.threads("no-thread-is-named-so").nanos());
        } finally {
            t.setName(name);
        }
    }

    @Test
    void shouldReadTheCpuTimeOfTheThreadsFoundAtEachReadingCountingNewcomersFromTheirStart() throws Exception {
        String name = Thread.currentThread().getName();
        Thread.currentThread().setName("cpu-tasks-test");
        try {
            long[] me = Procs.threadIds("cpu-tasks-test").stream().mapToLong(Long::longValue).toArray();
            assertEquals(1, me.length, "this thread's task id");
            long[][] watched = {new long[0]};
            CpuTime.Meter tasks = CpuTime.tasks(() -> watched[0]);
            spinOnThisThread(100_000_000L);
            long before = tasks.nanos();
            assertEquals(0, before, "no thread watched yet");
            watched[0] = me; // this thread "appears": all of its time so far counts
            long spun = spinOnThisThread(300_000_000L);
            long grown = tasks.nanos() - before;
            long all = CpuTime.ticksToNanos(CpuTime.statTicks(Files.readString(Path.of("/proc/self/task", Long.toString(me[0]), "stat"))));
            assertTrue(grown >= spun && grown <= all + 20_000_000L, "task CPU grew " + grown + " ns, spun " + spun + ", in all " + all);
            long now = tasks.nanos();
            watched[0] = new long[] {me[0], Integer.MAX_VALUE}; // one that has ended (or never was) is left out
            spun = spinOnThisThread(200_000_000L);
            grown = tasks.nanos() - now;
            // 10 ms ticks, sampled by the kernel: allow two either way.
            assertTrue(grown >= spun - 20_000_000L && grown <= spun + 20_000_000L, "task CPU grew " + grown + " ns, spun " + spun);
        } finally {
            Thread.currentThread().setName(name);
        }
    }

    @Test
    void shouldNotTakeJavaThreadsOrTheJvmsOwnForAStoresNativeThreads() throws Exception {
        var before = Procs.taskIds();
        Thread java = Thread.ofPlatform().name("a-java-thread-of-the-test").start(() -> {
            try {
                Thread.sleep(10_000);
            } catch (InterruptedException e) {
                // done
            }
        });
        try {
            new ProcessBuilder("true").start().waitFor(); // starts the JVM's process reaper, if it was not there
            long[] javaTid = Procs.threadIds("a-java-thread-o").stream().mapToLong(Long::longValue).toArray();
            assertEquals(1, javaTid.length);
            long[] natives = CpuTime.nativeThreadsSince(before);
            for (long tid : natives) {
                assertTrue(tid != javaTid[0], "a Java thread counted as native");
            }
            assertEquals("", Procs.comms(natives), "nothing native was started, only Java's and the JVM's own");
        } finally {
            java.interrupt();
            java.join();
        }
    }

    /** Burns at least {@code nanos} of this thread's CPU time (however long that takes in wall time); returns how much. */
    private static long spinOnThisThread(long nanos) {
        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        long start = threads.getCurrentThreadCpuTime();
        long x = 0;
        while (threads.getCurrentThreadCpuTime() - start < nanos) {
            for (int i = 0; i < 10_000; i++) {
                x += i * 31L ^ x;
            }
        }
        if (x == 42) {
            System.out.print("");
        }
        return threads.getCurrentThreadCpuTime() - start;
    }
}
