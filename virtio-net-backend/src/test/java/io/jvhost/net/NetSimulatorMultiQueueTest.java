package io.jvhost.net;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.net.ScriptedPort.Seen;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.net.NetRig.GUEST_MAC;
import static io.jvhost.net.NetRig.HEADER;
import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.MQ;
import static io.jvhost.net.NetRig.MRG_RXBUF;
import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Two queue pairs (virtio 1.2 §5.1.6.5.5): receive queue 2i and transmit queue 2i+1 on pair i's own poller. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NetSimulatorMultiQueueTest {
    private ScriptedPort port;
    private NetRig rig;

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
        if (port != null) {
            port.close();
        }
    }

    private void serveScripted() throws Exception {
        port = new ScriptedPort(2);
        rig = NetRig.serve(port, 2).start(MODERN | MRG_RXBUF | MQ);
    }

    @Test
    void shouldOfferMultiQueueAndReportTheQueuePairsInTheConfigSpace() throws Exception {
        serveScripted();

        assertEquals(MQ, rig.offered & MQ);
        assertEquals(4, rig.frontend.getQueueNum());
        byte[] config = rig.frontend.getConfig(0, 12);
        assertEquals(2, config[8] & 0xFF | (config[9] & 0xFF) << 8, "max_virtqueue_pairs");
    }

    @Test
    void shouldRunBothQueuesOfAPairOnOnePollerAndEachPairOnItsOwn() throws Exception {
        serveScripted();

        assertSame(rig.backend.poller(0), rig.backend.poller(1));
        assertSame(rig.backend.poller(2), rig.backend.poller(3));
        assertNotEquals(rig.backend.poller(0), rig.backend.poller(2));
    }

    @Test
    void shouldHandThePortEachPairsFramesWithThatPairsIndexOnThatPairsPoller() throws Exception {
        serveScripted();
        byte[] onPair0 = frame(700, 1), onPair1 = frame(900, 2);

        rig.transmit(1, onPair1, 12);
        rig.transmit(0, onPair0, 7, 12);

        Map<Integer, Seen> byPair = new TreeMap<>();
        for (int i = 0; i < 2; i++) {
            Seen s = port.awaitSeen();
            byPair.put(s.pair(), s);
        }
        assertArrayEquals(onPair0, byPair.get(0).frame());
        assertArrayEquals(onPair1, byPair.get(1).frame());
        assertEquals(rig.backend.poller(0).name(), byPair.get(0).thread().getName());
        assertEquals(rig.backend.poller(2).name(), byPair.get(1).thread().getName());
        assertEquals(1, rig.counters(0).txFrames);
        assertEquals(700, rig.counters(0).txBytes);
        assertEquals(1, rig.counters(1).txFrames);
        assertEquals(900, rig.counters(1).txBytes);
    }

    @Test
    void shouldDeliverIntoTheReceiveQueueOfTheChosenPairOnly() throws Exception {
        serveScripted();
        rig.postRx(0, 2, 2048);
        rig.postRx(1, 2, 2048);
        byte[] injected = frame(300, 3), produced = frame(400, 4);

        assertTrue(port.inject(1, injected));
        port.produce(1, produced);

        // Injected and produced frames come from two sources: their relative order is not defined.
        byte[] first = rig.awaitFrame(1).frame(), second = rig.awaitFrame(1).frame();
        boolean injectedFirst = first.length == injected.length;
        assertArrayEquals(injected, injectedFirst ? first : second);
        assertArrayEquals(produced, injectedFirst ? second : first);
        rig.assertNothingMoreUsed(0);
        assertEquals(2, rig.counters(1).rxFrames);
        assertEquals(0, rig.counters(0).rxFrames);

        byte[] onPair0 = frame(500, 5);
        assertTrue(port.inject(0, onPair0));
        assertArrayEquals(onPair0, rig.awaitFrame(0).frame());
        rig.assertNothingMoreUsed(2);
    }

    /**
     * Both pairs reflect at once, each driven by its own guest thread; every frame must come back
     * intact on the pair it went out on, however the two pollers interleave.
     */
    @Test
    void shouldReflectFramesOnBothPairsAtOnceWithoutMixingThemUp() throws Exception {
        rig = NetRig.serve(new BenchPorts.Reflect(), 2).start(MODERN | MQ);
        int batch = 32, rounds = 40, slot = 2048;
        GuestRam ram = rig.ram;
        long[] area = {ram.allocate(2L * batch * slot, 4096), ram.allocate(2L * batch * slot, 4096)};
        ExecutorService guests = Executors.newFixedThreadPool(2);
        try {
            List<Future<Integer>> results = new ArrayList<>();
            for (int pair = 0; pair < 2; pair++) {
                int p = pair;
                Callable<Integer> guest = () -> reflectRounds(p, rig.rx(p), rig.tx(p), ram, area[p], batch, rounds, slot);
                results.add(guests.submit(guest));
            }
            for (Future<Integer> r : results) {
                assertEquals(batch * rounds, r.get(50, TimeUnit.SECONDS));
            }
        } finally {
            guests.shutdownNow();
        }
        for (int pair = 0; pair < 2; pair++) {
            assertEquals((long) batch * rounds, rig.counters(pair).txFrames);
            assertEquals((long) batch * rounds, rig.counters(pair).rxFrames);
            assertEquals(0, rig.counters(pair).rxDropped);
        }
    }

    /** One guest thread's traffic on one pair: batches of frames out, each expected back swapped. */
    private static int reflectRounds(int pair, DriverQueue rx, DriverQueue tx, GuestRam ram, long area, int batch,
                                     int rounds, int slot) {
        int checked = 0;
        for (int round = 0; round < rounds; round++) {
            byte[][] sent = new byte[batch][];
            int[] rxHeads = new int[batch];
            for (int i = 0; i < batch; i++) {
                long rxAt = area + (long) i * slot;
                rxHeads[i] = rx.chain(Buffer.writable(rxAt, slot));
                rx.makeAvailable(rxHeads[i]);
            }
            rx.kick();
            for (int i = 0; i < batch; i++) {
                int seed = (pair << 20) | (round << 8) | i;
                sent[i] = frame(0x02_00_00_00_00_10L + pair, GUEST_MAC, 60 + (seed * 31) % 1450, seed);
                long txAt = area + (long) (batch + i) * slot;
                MemorySegment.copy(sent[i], 0, ram.at(txAt + HEADER, sent[i].length), ValueLayout.JAVA_BYTE, 0,
                        sent[i].length);
                ram.at(txAt, HEADER).fill((byte) 0);
                tx.makeAvailable(tx.chain(Buffer.readable(txAt, HEADER + sent[i].length)));
            }
            tx.kick();
            for (int i = 0; i < batch; i++) {
                assertNotNull(tx.awaitUsed(NetRig.TIMEOUT), "transmit completion on pair " + pair);
            }
            for (int i = 0; i < batch; i++) {
                Used u = rx.awaitUsed(NetRig.TIMEOUT);
                assertNotNull(u, "reflected frame " + i + " of round " + round + " on pair " + pair);
                assertEquals(rxHeads[i], u.id());
                assertEquals(HEADER + sent[i].length, u.length());
                byte[] got = ram.at(area + (long) i * slot + HEADER, sent[i].length).toArray(ValueLayout.JAVA_BYTE);
                assertArrayEquals(NetSimulatorPortsTest.swapped(sent[i]), got,
                        "frame " + i + " of round " + round + " on pair " + pair);
                checked++;
            }
        }
        return checked;
    }
}
