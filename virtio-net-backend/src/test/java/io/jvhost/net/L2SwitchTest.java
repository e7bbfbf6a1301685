package io.jvhost.net;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The learning switch on its own: no sockets and no pollers. Each port is plugged into a bare
 * {@link GuestNic} whose injection queues show what the switch sent it; time is an injected clock.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class L2SwitchTest {
    static final long AGEING_MILLIS = 1000;
    static final long A = 0x52_54_00_00_00_0AL, B = 0x52_54_00_00_00_0BL, C = 0x52_54_00_00_00_0CL;
    static final long UNKNOWN = 0x52_54_00_00_00_FFL;
    static final long MULTICAST = 0x01_00_5E_00_00_01L;

    private final AtomicLong now = new AtomicLong(1_000_000);
    private L2Switch sw;
    private final List<GuestNic> nics = new ArrayList<>();

    @BeforeEach
    void setUp() {
        sw = new L2Switch(AGEING_MILLIS, now::get);
        for (int i = 0; i < 3; i++) {
            plug(1);
        }
    }

    /** A new switch port with a NIC of {@code pairs} queue pairs behind it. */
    private void plug(int pairs) {
        GuestNic nic = new GuestNic(null, pairs, 2048, 64);
        sw.newPort().attach(nic);
        nics.add(nic);
    }

    /** Port {@code from} receives a frame from its guest; returns the frame. */
    private byte[] send(int from, long dst, long src, int seed) {
        byte[] f = frame(dst, src, 60 + seed, seed);
        sw.port(from).onFrame(nics.get(from), 0, MemorySegment.ofArray(f), 0, f.length);
        return f;
    }

    /** The frames the switch has queued for port {@code port}'s guest since the last call, on any pair. */
    private List<byte[]> taken(int port) {
        List<byte[]> out = new ArrayList<>();
        GuestNic nic = nics.get(port);
        for (int pair = 0; pair < nic.pairs(); pair++) {
            for (Packet p; (p = nic.pair(pair).injected.poll()) != null; ) {
                out.add(p.buffer.asSlice(0, p.length).toArray(ValueLayout.JAVA_BYTE));
            }
        }
        return out;
    }

    /** Asserts exactly {@code ports} got {@code frame} (once each) and no port got anything else. */
    private void assertReached(byte[] frame, Integer... ports) {
        List<Integer> want = List.of(ports);
        for (int p = 0; p < nics.size(); p++) {
            List<byte[]> got = taken(p);
            if (want.contains(p)) {
                assertEquals(1, got.size(), "frames for port " + p);
                assertArrayEquals(frame, got.get(0), "frame at port " + p);
            } else {
                assertEquals(0, got.size(), "frames for port " + p);
            }
        }
    }

    @Test
    void shouldFloodAFrameForAnUnknownDestinationToEveryOtherPortButNeverBackToTheSender() {
        byte[] f = send(0, UNKNOWN, A, 1);

        assertReached(f, 1, 2);
    }

    @Test
    void shouldLearnWhereASourceLivesAndSendUnicastForItToThatPortOnly() {
        assertReached(send(1, UNKNOWN, B, 1), 0, 2);

        byte[] toB = send(0, B, A, 2);

        assertReached(toB, 1);
        assertEquals(1, sw.lookup(B));
        assertEquals(0, sw.lookup(A), "the sender was learned too");
        assertReached(send(1, A, B, 3), 0);
    }

    @ParameterizedTest(name = "to {0}")
    @ValueSource(longs = {Frames.BROADCAST, MULTICAST, 0x33_33_00_00_00_01L})
    void shouldFloodBroadcastAndMulticastToEveryOtherPortEvenWhenEveryMacIsKnown(long group) {
        send(1, UNKNOWN, B, 1);
        send(2, UNKNOWN, C, 2);
        taken(0);
        taken(1);
        taken(2);

        byte[] f = send(0, group, A, 3);

        assertReached(f, 1, 2);
    }

    @Test
    void shouldSendNothingToAnUnpluggedPortWhetherFloodingOrUnicast() {
        send(1, UNKNOWN, B, 1);
        taken(0);
        taken(2);
        sw.port(1).close(); // its NIC was removed (serve's remove, or the process ending)

        assertReached(send(0, UNKNOWN, A, 2), 2);
        assertReached(send(0, B, A, 3));
    }

    @Test
    void shouldNeverLearnAGroupAddressAsASource() {
        send(1, UNKNOWN, MULTICAST, 1);

        assertEquals(-1, sw.lookup(MULTICAST));
    }

    @Test
    void shouldNotSendAFrameBackToThePortItsDestinationLivesBehind() {
        send(0, UNKNOWN, A, 1);
        send(0, UNKNOWN, C, 2); // A and C both behind port 0
        taken(1);
        taken(2);

        byte[] f = send(0, C, A, 3);

        assertReached(f);
    }

    @Test
    void shouldKeepAnEntryForTheAgeingTimeAndFloodAgainOnceItIsOlder() {
        send(1, UNKNOWN, B, 1);
        taken(0);
        taken(2);

        now.addAndGet(AGEING_MILLIS);
        assertReached(send(0, B, A, 2), 1);

        now.addAndGet(1);
        assertEquals(-1, sw.lookup(B), "aged out");
        assertReached(send(2, B, C, 3), 0, 1);

        send(1, A, B, 4); // B speaks again: learned afresh
        taken(0);
        assertReached(send(0, B, A, 5), 1);
    }

    @Test
    void shouldFollowAMacThatMovesToAnotherPort() {
        send(1, UNKNOWN, B, 1);
        assertEquals(1, sw.lookup(B));
        taken(0);
        taken(2);

        send(2, UNKNOWN, B, 2); // B now answers from port 2
        taken(0);
        taken(1);

        assertEquals(2, sw.lookup(B));
        assertReached(send(0, B, A, 3), 2);
    }

    @Test
    void shouldFloodForMacsTheCrowdedTableCannotHold() {
        int tried = 3 * 4096;
        long base = 0x02_00_00_00_00_00L;
        for (int i = 0; i < tried; i++) {
            sw.learn(base + i, 1);
        }
        int known = 0;
        long unknown = -1, learned = -1;
        for (int i = 0; i < tried; i++) {
            if (sw.lookup(base + i) == 1) {
                known++;
                learned = base + i;
            } else {
                unknown = base + i;
            }
        }
        assertTrue(known <= 4096, known + " entries in a table of 4096");
        assertTrue(unknown >= 0, "some MAC did not fit");

        assertReached(send(0, unknown, A, 1), 1, 2);
        assertReached(send(0, learned, A, 2), 1);
    }

    /** Pollers of several NICs learn and look up at once; every MAC must end up on its own port. */
    @Test
    void shouldKeepEveryMacOnItsPortWhenSeveralThreadsLearnAtOnce() throws Exception {
        int threads = 3, macs = 100;
        CyclicBarrier start = new CyclicBarrier(threads);
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            int port = t;
            workers.add(Thread.ofPlatform().start(() -> {
                try {
                    start.await();
                } catch (Exception e) {
                    throw new IllegalStateException(e);
                }
                for (int round = 0; round < 50; round++) {
                    for (int i = 0; i < macs; i++) {
                        sw.learn(0x02_00_00_00_00_00L | (long) port << 16 | i, port);
                        sw.learn(0x02_AA_00_00_00_00L, port); // one MAC everybody claims
                        sw.lookup(0x02_00_00_00_00_00L | (long) ((port + 1) % threads) << 16 | i);
                    }
                }
            }));
        }
        for (Thread w : workers) {
            w.join();
        }

        for (int port = 0; port < threads; port++) {
            for (int i = 0; i < macs; i++) {
                assertEquals(port, sw.lookup(0x02_00_00_00_00_00L | (long) port << 16 | i));
            }
        }
        int shared = sw.lookup(0x02_AA_00_00_00_00L);
        assertTrue(shared >= 0 && shared < threads, "the contested MAC is on one of its ports: " + shared);
    }
}
