package io.jvhost.core.runtime;

import static io.jvhost.core.protocol.MessageType.*;
import static io.jvhost.testkit.Payloads.memReg;
import static io.jvhost.testkit.Payloads.memTable;
import static io.jvhost.core.device.VirtioFeatures.bit;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Layout;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.testkit.Await;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.Payloads.Region;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.testkit.Traffic.Request;
import io.jvhost.core.device.VirtioFeatures;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Buffers through the socket-configured backend, in event mode and busy-poll mode: no lost kicks,
 * every chain layout, index wrap-around, interrupt suppression with and without EVENT_IDX, memory
 * table changes under a running queue, stop and resume, and queues spread over two pollers.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class DataPathTest {
    static final long EVENT_IDX = bit(VirtioFeatures.RING_EVENT_IDX);
    static final long REGION_SIZE = 1 << 20;

    private static BackendFixture start(IdleMode mode, TestDevice device) throws IOException {
        return BackendFixture.start(device, new BackendOptions(mode, null));
    }

    private static BackendFixture start(IdleMode mode) throws IOException {
        return start(mode, TestDevice.withQueues(2).build());
    }

    /** Features, memory and ring {@code q} with base {@code base}, everything but the kick. REPLY_ACK on. */
    private static void configureAllButKick(Frontend f, long features, GuestRam ram, DriverQueue q, int base) throws IOException {
        assertEquals(0, f.setFeatures(features));
        assertEquals(0, f.setMemTable(ram));
        assertEquals(0, f.setVringNum(q.index(), q.size()));
        assertEquals(0, f.setVringBase(q.index(), base));
        assertEquals(0, f.setVringAddr(q));
        assertEquals(0, f.setVringCall(q.index(), q.callFd()));
        assertEquals(0, f.setVringEnable(q.index(), true));
    }

    /** Every idle mode with every ring layout. */
    static Stream<Arguments> modesAndLayouts() {
        return Stream.of(IdleMode.values()).flatMap(m -> Stream.of(Layout.values()).map(l -> Arguments.of(m, l)));
    }

    /** Moves {@code ram}'s allocator to the start of its second region. */
    private static void allocateFromSecondRegion(GuestRam ram) {
        long at = ram.allocate(1, 1);
        ram.allocate(REGION_SIZE - at - 1, 1);
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldProcessBuffersPostedBeforeTheRingStarted(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Frontend f = fx.connect()) {
            long features = f.handshakeLikeQemu(2);
            configureAllButKick(f, features, ram, q, 0);
            List<Request> early = new ArrayList<>();
            List<Integer> heads = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                Request r = Traffic.request(ram, Traffic.pattern(40, i));
                heads.add(q.chain(r.buffers()));
                q.makeAvailable(heads.get(i)); // the kick, had there been one, would have gone nowhere
                early.add(r);
            }
            assertEquals(0, fx.device().seenCount(0));

            assertEquals(0, f.setVringKick(0, q.kickFd()));
            for (int i = 0; i < 3; i++) {
                early.get(i).assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), heads.get(i));
            }
            Traffic.echo(q, 2, 10);
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("modesAndLayouts")
    void shouldEchoThroughEveryChainLayout(IdleMode mode, Layout layout) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64, layout);
             Frontend f = fx.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);

            byte[] data = Traffic.pattern(300, 1);
            long in = Traffic.place(ram, data);
            long out = ram.allocate(300, 8);
            int head = q.post(Buffer.readable(in, 100), Buffer.readable(in + 100, 1), Buffer.readable(in + 101, 199),
                    Buffer.writable(out, 7), Buffer.writable(out + 7, 293));
            Used u = q.awaitUsed(Traffic.USED_TIMEOUT);
            assertEquals(new Used(head, 300), u, "split readable and writable buffers");
            assertArrayEquals(data, ram.at(out, 300).toArray(ValueLayout.JAVA_BYTE));

            Request r = Traffic.request(ram, Traffic.pattern(64, 2));
            head = q.indirectChain(r.buffers());
            q.makeAvailable(head);
            q.kick();
            r.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), head);

            long fill = ram.allocate(128, 8);
            head = q.post(Buffer.writable(fill, 128));
            assertEquals(new Used(head, 128), q.awaitUsed(Traffic.USED_TIMEOUT), "nothing to read: filled");
            for (byte b : ram.at(fill, 128).toArray(ValueLayout.JAVA_BYTE)) {
                assertEquals(TestDevice.FILL, b);
            }

            head = q.post(Buffer.readable(Traffic.place(ram, Traffic.pattern(50, 3)), 50));
            assertEquals(new Used(head, 0), q.awaitUsed(Traffic.USED_TIMEOUT), "nothing to write");
            assertArrayEquals(Traffic.pattern(50, 3), fx.device().seen(0).getLast().readable());
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("modesAndLayouts")
    void shouldProcessManyRequestsInFlightInOrder(IdleMode mode, Layout layout) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 128, layout);
             Frontend f = fx.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
            List<Request> requests = new ArrayList<>();
            List<Integer> heads = new ArrayList<>();
            for (int i = 0; i < 60; i++) {
                Request r = Traffic.request(ram, Traffic.pattern(16 + i, i));
                heads.add(q.chain(r.buffers()));
                requests.add(r);
            }
            for (int head : heads) {
                q.makeAvailable(head);
            }
            q.kick();
            for (int i = 0; i < 60; i++) {
                requests.get(i).assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), heads.get(i));
            }
        }
    }

    /** CPU time of the threads whose names start with {@code prefix}, in nanoseconds. */
    private static long cpuOf(String prefix) {
        java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
        long total = 0;
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t.getName().startsWith(prefix)) {
                total += Math.max(0, mx.getThreadCpuTime(t.threadId()));
            }
        }
        return total;
    }

    @org.junit.jupiter.api.Test
    void shouldLetAnAdaptivePollerSleepWhenTrafficStopsAndWakeForTheNextKick() throws Exception {
        try (BackendFixture fx = start(IdleMode.ADAPTIVE); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connect()) {
            long features = f.handshakeLikeQemu(2);
            configureAllButKick(f, features, ram, q, 0);
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            Traffic.echo(q, 20, 0);
            Thread.sleep(50); // past the spin and yield budget: the poller sleeps on the kick fd now
            String pollers = fx.backend().name() + "-poller-";
            long before = cpuOf(pollers);
            Thread.sleep(500);
            long idleCpu = cpuOf(pollers) - before;
            assertTrue(idleCpu < 100_000_000L, "an idle adaptive poller sleeps: " + idleCpu / 1_000_000 + " ms CPU in 500 ms");
            for (int i = 0; i < 5; i++) { // and each next kick wakes it at once, not at the epoll timeout (1 s)
                Thread.sleep(20);
                long start = System.nanoTime();
                Traffic.echo(q, 100 + i);
                long millis = (System.nanoTime() - start) / 1_000_000;
                assertTrue(millis < 500, "a kick woke the sleeping poller after " + millis + " ms");
            }
        }
    }

    /** Kicks the poller took from its sleep while {@code mode} served 20 requests, one at a time, of a queue that asks to sleep when idle. */
    private static long kicksServingAQueueThatSleepsWhenIdle(IdleMode mode) throws Exception {
        try (BackendFixture fx = start(mode, TestDevice.withQueues(2).sleepWhenIdle(true).build());
             GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connect()) {
            long features = f.handshakeLikeQemu(2);
            configureAllButKick(f, features, ram, q, 0);
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            Traffic.echo(q, 20, 0); // each request posted right after the last one's used element
            Traffic.quiesce(f, q);
            return fx.backend().queue(0).counters().kicks;
        }
    }

    @org.junit.jupiter.api.Test
    void shouldLetAnAdaptivePollerSleepAtOnceWhenItsQueueSaysOtherThreadsMakeItsWork() throws Exception {
        long kicks = kicksServingAQueueThatSleepsWhenIdle(IdleMode.ADAPTIVE);
        assertTrue(kicks >= 10, "no spin between requests: most of the 20 had to wake it with a kick, " + kicks + " did");
    }

    @org.junit.jupiter.api.Test
    void shouldKeepABusyPollerSpinningForAQueueThatAsksToSleepWhenIdle() throws Exception {
        assertEquals(0, kicksServingAQueueThatSleepsWhenIdle(IdleMode.BUSY), "busy-poll was asked for: it never sleeps");
    }

    @ParameterizedTest
    @EnumSource(value = IdleMode.class, names = {"BUSY", "ADAPTIVE"})
    void shouldCoalesceInterruptsToOnePerSoManyUsedEntriesAndSendTheLastOneAnyway(IdleMode mode) throws Exception {
        BackendOptions coalescing = new BackendOptions(mode, null, null, 8, 200_000);
        try (BackendFixture fx = BackendFixture.start(TestDevice.withQueues(2).build(), coalescing);
             GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connect()) {
            long features = f.handshakeLikeQemu(2) & ~(1L << 29); // no EVENT_IDX: the driver wants every interrupt
            configureAllButKick(f, features, ram, q, 0);
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            Traffic.echo(q, 60, 0); // one request at a time, each answer read from the used ring
            io.jvhost.core.ring.QueueCounters c = fx.backend().queue(0).counters();
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (System.nanoTime() < deadline && c.notificationsSent < 8) {
                Thread.sleep(10); // 7 interrupts at 8, 16, ... 56 entries; the last 4 entries' within 200 ms
            }
            long calls = Math.max(0, io.jvhost.core.sys.LibC.eventfdDrain(q.callFd().get()));
            assertTrue(c.notificationsSent >= 8 && calls >= 8, "the burst's last interrupt went out: " + c + ", " + calls + " calls");
            // A poller that goes to sleep sends what it holds first: one more call each time a kick
            // had to wake it (in adaptive mode, when the next request came after its spin window).
            assertTrue(c.notificationsSent <= 60 / 8 + 3 + c.kicks, "about one interrupt per 8 used entries: " + c);
            assertTrue(c.notificationsSent < 60 / 2, "most entries' interrupts coalesced: " + c);
            assertTrue(c.notificationsCoalesced > 0, c.toString());
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldWrapTheRingAndItsSixteenBitIndices(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 8);
             Frontend f = fx.connect()) {
            long features = f.handshakeLikeQemu(2);
            q.startAt(0xFFF0);
            configureAllButKick(f, features, ram, q, 0xFFF0);
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            Traffic.echo(q, 40, 0);
            assertEquals(0x0018, f.getVringBase(0), "0xFFF0 + 40, modulo 2^16");
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldInterruptOnlyWhenUsedEventIsPassedWithEventIdx(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Frontend f = fx.connect()) {
            long features = f.handshakeLikeQemu(2);
            assertTrue((features & EVENT_IDX) != 0);
            q.setUsedEvent(5); // interrupt me when the used index moves past 5
            f.startLikeQemu(features, ram, q);
            Traffic.echo(q, 5, 0);
            Traffic.quiesce(f, q);
            assertEquals(0, q.takeInterrupts(), "used index 1..5: not yet past 5");
            Traffic.echo(q, 1, 5);
            Traffic.quiesce(f, q);
            assertEquals(1, q.takeInterrupts(), "used index 6 passes 5");
            Traffic.echo(q, 3, 6);
            Traffic.quiesce(f, q);
            assertEquals(0, q.takeInterrupts(), "used event left behind");
            q.setUsedEvent(q.usedIdx());
            Traffic.echo(q, 1, 9);
            Traffic.quiesce(f, q);
            assertEquals(1, q.takeInterrupts(), "asked for the next one");
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldInterruptUnlessTheDriverSetsNoInterruptWithoutEventIdx(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Frontend f = fx.connect()) {
            long features = f.handshakeLikeQemu(2) & ~EVENT_IDX;
            f.startLikeQemu(features, ram, q);
            q.setNoInterrupt(true);
            Traffic.echo(q, 3, 0);
            Traffic.quiesce(f, q);
            assertEquals(0, q.takeInterrupts(), "VRING_AVAIL_F_NO_INTERRUPT honoured");
            q.setNoInterrupt(false);
            Traffic.echo(q, 2, 3);
            Traffic.quiesce(f, q);
            assertEquals(2, q.takeInterrupts(), "one interrupt per completion");
        }
    }

    @Test
    void shouldAskForTheNextKickThroughAvailEventWhenIdleWithEventIdx() throws IOException {
        try (BackendFixture fx = start(IdleMode.EVENT); GuestRam ram = new GuestRam(1 << 20);
             DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
            Traffic.echo(q, 3, 0);
            Await.until("avail_event == avail idx (" + q.availIdx() + ")", () -> q.availEvent() == q.availIdx());
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldSuppressKicksOnlyWhileBusyPollingWithoutEventIdx(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Frontend f = fx.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2) & ~EVENT_IDX, ram, q);
            Traffic.echo(q, 2, 0);
            int expected = mode == IdleMode.BUSY ? 1 : 0; // VRING_USED_F_NO_NOTIFY while spinning; cleared before sleeping
            Await.until("used flags " + expected, () -> q.usedFlags() == expected);
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldKeepAQueueRunningThroughMemoryTableChanges(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(2 * REGION_SIZE, REGION_SIZE);
             DriverQueue q = new DriverQueue(ram, 0, 64); Frontend f = fx.connect()) {
            long features = f.handshakeLikeQemu(2);
            assertEquals(0, f.setFeatures(features));
            assertEquals(0, f.request(SET_MEM_TABLE, memTable(Region.of(ram, 0)), ram.fd()), "first region only");
            assertEquals(0, f.setVringNum(0, 64));
            assertEquals(0, f.setVringAddr(q));
            assertEquals(0, f.setVringCall(0, q.callFd()));
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            assertEquals(0, f.setVringEnable(0, true));
            Traffic.echo(q, 1, 0);
            allocateFromSecondRegion(ram);

            Request high = Traffic.request(ram, Traffic.pattern(64, 1));
            int head = q.post(high.buffers());
            assertEquals(new Used(head, 0), q.awaitUsed(Traffic.USED_TIMEOUT), "second region not in the table yet");

            assertEquals(0, f.request(ADD_MEM_REG, memReg(Region.of(ram, 1)), ram.fd()));
            Traffic.echo(q, 2, 2);

            assertEquals(0, f.request(REM_MEM_REG, memReg(Region.of(ram, 1)), ram.fd()));
            head = q.post(Traffic.request(ram, Traffic.pattern(64, 4)).buffers());
            assertEquals(new Used(head, 0), q.awaitUsed(Traffic.USED_TIMEOUT), "removed region no longer reachable");

            assertEquals(0, f.setMemTable(ram), "both regions, new fds");
            Traffic.echo(q, 2, 5);
            assertEquals(0, f.request(SET_MEM_TABLE, memTable(Region.of(ram, 0)), ram.fd()));
            head = q.post(Traffic.request(ram, Traffic.pattern(64, 7)).buffers());
            assertEquals(new Used(head, 0), q.awaitUsed(Traffic.USED_TIMEOUT));
            assertEquals(8, f.getVringBase(0), "every chain taken once through all the changes");
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("modesAndLayouts")
    void shouldKeepEchoingWhileTheMemoryTableChangesUnderneath(IdleMode mode, Layout layout) throws Exception {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(2 * REGION_SIZE, REGION_SIZE);
             DriverQueue q = new DriverQueue(ram, 0, 64, layout); Frontend f = fx.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
            List<Request> requests = new ArrayList<>();
            for (int i = 0; i < 32; i++) {
                requests.add(Traffic.request(ram, Traffic.pattern(200, i)));
            }
            AtomicBoolean stop = new AtomicBoolean();
            AtomicInteger roundTrips = new AtomicInteger();
            CompletableFuture<Integer> traffic = CompletableFuture.supplyAsync(() -> {
                int n = 0;
                while (!stop.get()) {
                    Request r = requests.get(n % requests.size());
                    ram.at(r.outGpa(), r.data().length).fill((byte) 0);
                    int head = q.post(r.buffers());
                    r.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), head);
                    roundTrips.set(++n);
                }
                return n;
            });
            Await.until("traffic flowing", () -> roundTrips.get() > 0 || traffic.isDone());
            int before = roundTrips.get();
            Region second = Region.of(ram, 1);
            // At least 50 changes, and on until traffic has moved on under them (however the threads are scheduled).
            for (int i = 0; (i < 50 || roundTrips.get() - before < 20) && !traffic.isDone(); i++) {
                assertEquals(0, f.setMemTable(ram));
                assertEquals(0, f.request(REM_MEM_REG, memReg(second), ram.fd()));
                assertEquals(0, f.request(ADD_MEM_REG, memReg(second), ram.fd()));
            }
            int during = roundTrips.get() - before;
            stop.set(true);
            int done = traffic.get(20, TimeUnit.SECONDS);
            assertTrue(during > 0, "round trips completed while the table changed");
            assertEquals(layout == Layout.SPLIT ? done : q.base(), f.getVringBase(0)); // packed: position and laps
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldResumeAtTheBaseGivenAfterGetVringBase(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Frontend f = fx.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
            Traffic.echo(q, 5, 0);
            int base = f.getVringBase(0);
            assertEquals(5, base);

            List<Request> waiting = new ArrayList<>();
            List<Integer> heads = new ArrayList<>();
            for (int i = 0; i < 2; i++) {
                Request r = Traffic.request(ram, Traffic.pattern(30, 20 + i));
                heads.add(q.post(r.buffers()));
                waiting.add(r);
            }
            assertEquals(5, f.getVringBase(0), "stopped: nothing taken");

            // VM continues: QEMU sends the ring again with the index it got back.
            assertEquals(0, f.setVringNum(0, 64));
            assertEquals(0, f.setVringBase(0, base));
            assertEquals(0, f.setVringAddr(q));
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            for (int i = 0; i < 2; i++) {
                waiting.get(i).assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), heads.get(i));
            }
            assertEquals(7, fx.device().seenCount(0), "nothing processed twice, nothing lost");
            assertEquals(7, f.getVringBase(0));
        }
    }

    /**
     * A packed ring stopped by GET_VRING_BASE answers QEMU's packed layout (avail and used position
     * with their wrap counters) and resumes exactly there when QEMU gives it back, across a wrap.
     */
    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldResumeAPackedRingAtTheBaseGivenAfterGetVringBase(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = DriverQueue.packed(ram, 0, 8);
             Frontend f = fx.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
            Traffic.echo(q, 5, 0); // two descriptors each: slots 0 to 9, past the wrap into the second lap
            int base = f.getVringBase(0);
            assertEquals(2 | 2 << 16, base, "slot 2, wrap counters 0, both halves");
            assertEquals(q.base(), base);

            Request r = Traffic.request(ram, Traffic.pattern(30, 20));
            int id = q.post(r.buffers());
            assertEquals(base, f.getVringBase(0), "stopped: nothing taken");

            assertEquals(0, f.setVringNum(0, 8));
            assertEquals(0, f.setVringBase(0, base));
            assertEquals(0, f.setVringAddr(q));
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            r.assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), id);
            assertEquals(6, fx.device().seenCount(0), "nothing processed twice, nothing lost");
            assertEquals(4 | 4 << 16, f.getVringBase(0));
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldRefuseToStartAPackedRingWhoseBaseIsOutsideIt(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = DriverQueue.packed(ram, 0, 8);
             Frontend f = fx.connect(); Fd err = EventFd.create()) {
            long features = f.handshakeLikeQemu(2) | bit(VirtioFeatures.RING_PACKED);
            assertEquals(0, f.setVringErr(0, err));
            configureAllButKick(f, features, ram, q, 9 | 1 << 15); // slot 9 of a ring of 8
            assertEquals(0, f.setVringKick(0, q.kickFd()));
            Await.until("err eventfd written", () -> LibC.eventfdDrain(err.get()) > 0);
            assertEquals(0, fx.device().started(0), "the queue never started");
            assertEquals(0, f.setVringBase(0, 0x8000_8000), "a good base: it starts");
            Traffic.echo(q, 1, 0);
        }
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("modesAndLayouts")
    void shouldRunEachQueueSetOnItsOwnPoller(IdleMode mode, Layout layout) throws IOException {
        TestDevice device = TestDevice.withQueues(4).build();
        int[][] map = {{0, 1}, {2, 3}};
        try (BackendFixture fx = BackendFixture.start(device, new BackendOptions(mode, map));
             GuestRam ram = new GuestRam(1 << 20); DriverQueue q0 = new DriverQueue(ram, 0, 64, layout);
             DriverQueue q1 = new DriverQueue(ram, 1, 64, layout); DriverQueue q2 = new DriverQueue(ram, 2, 64, layout);
             DriverQueue q3 = new DriverQueue(ram, 3, 64, layout); Frontend f = fx.connect()) {
            assertEquals(2, fx.backend().pollerCount());
            DriverQueue[] queues = {q0, q1, q2, q3};
            f.startLikeQemu(f.handshakeLikeQemu(4), ram, queues);
            List<Request> requests = new ArrayList<>();
            List<Integer> heads = new ArrayList<>();
            for (DriverQueue q : queues) {
                for (int i = 0; i < 4; i++) {
                    Request r = Traffic.request(ram, Traffic.pattern(32, 10 * q.index() + i));
                    heads.add(q.post(r.buffers()));
                    requests.add(r);
                }
            }
            for (int i = 0; i < requests.size(); i++) {
                DriverQueue q = queues[i / 4];
                requests.get(i).assertEchoed(ram, q.awaitUsed(Traffic.USED_TIMEOUT), heads.get(i));
            }
            for (int v = 0; v < 4; v++) {
                String poller = "test-poller-" + (v / 2);
                for (TestDevice.Seen s : device.seen(v)) {
                    assertEquals(poller, s.thread(), "queue " + v);
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldStopARingWhoseAvailIndexJumpsSignalErrAndServeTheResetRing(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Fd err = EventFd.create(); Frontend f = fx.connect()) {
            long features = f.handshakeLikeQemu(2);
            assertEquals(0, f.setVringErr(0, err));
            f.startLikeQemu(features, ram, q);
            Traffic.echo(q, 1, 0);
            q.setAvailIdx(q.availIdx() + 1000);
            q.kick();
            Await.until("err eventfd signalled", () -> LibC.eventfdDrain(err.get()) > 0);
            assertEquals(1, f.getVringBase(0), "nothing taken from the corrupt ring");
            assertEquals(1, fx.device().seenCount(0));

            try (DriverQueue fresh = new DriverQueue(ram, 0, 64)) {
                assertEquals(0, f.setVringNum(0, 64));
                assertEquals(0, f.setVringBase(0, 0));
                assertEquals(0, f.setVringAddr(fresh));
                assertEquals(0, f.setVringCall(0, fresh.callFd()));
                assertEquals(0, f.setVringKick(0, fresh.kickFd()));
                Traffic.echo(fresh, 2, 1);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(IdleMode.class)
    void shouldCompleteAChainOutsideGuestMemoryWithZeroBytesAndCarryOn(IdleMode mode) throws IOException {
        try (BackendFixture fx = start(mode); GuestRam ram = new GuestRam(1 << 20); DriverQueue q = new DriverQueue(ram, 0, 64);
             Frontend f = fx.connect()) {
            f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
            int head = q.post(Buffer.readable(0x1000, 16), Buffer.writable(ram.size() - 8, 16));
            Used u = q.awaitUsed(Traffic.USED_TIMEOUT);
            assertNotNull(u);
            assertEquals(new Used(head, 0), u);
            Traffic.echo(q, 2, 0);
            assertEquals(2, fx.device().seenCount(0), "the malformed chain never reached the device");
        }
    }
}
