package io.jvhost.net;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.core.ring.ChainError;
import io.jvhost.net.ScriptedPort.Seen;
import io.jvhost.testkit.frontend.DriverQueue.Layout;

import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;

import static io.jvhost.testkit.frontend.DriverQueue.F_INDIRECT;
import static io.jvhost.testkit.frontend.DriverQueue.F_NEXT;
import static io.jvhost.net.NetRig.HEADER;
import static io.jvhost.net.NetRig.LEGACY_HEADER;
import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.MRG_RXBUF;
import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/**
 * Guest to host: whatever way the driver lays header and frame out over descriptors (virtio 1.2
 * §2.7.4, §5.1.6.2), the port is handed exactly the frame; frames of impossible sizes and malformed
 * chains are refused, counted and completed with 0 bytes, and the next good frame still goes through.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
@ParameterizedClass(name = "{0}")
@EnumSource(Layout.class)
class NetSimulatorTransmitTest {
    /** The guest's rings: the same tests on split and on packed ones. */
    @Parameter
    Layout layout;

    private ScriptedPort port;
    private NetRig rig;

    private void serve(long features) throws Exception {
        port = new ScriptedPort(1);
        rig = NetRig.serve(port, 1, layout).start(features);
    }

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
        if (port != null) {
            port.close();
        }
    }

    /** Asserts the port is handed exactly {@code frame}, on pair 0, and nothing before it. */
    private void assertPortGets(byte[] frame) throws InterruptedException {
        Seen s = port.awaitSeen();
        assertEquals(0, s.pair());
        assertArrayEquals(frame, s.frame(), "the frame the port was handed");
    }

    /** Cuts of header + frame into descriptors: offsets where one buffer ends and the next begins. */
    static Stream<Arguments> layouts() {
        return Stream.of(
                Arguments.of("header and frame in one buffer", new int[] {}),
                Arguments.of("header, then frame", new int[] {12}),
                Arguments.of("header split in two, frame in one", new int[] {5, 12}),
                Arguments.of("header split in two, frame in three", new int[] {7, 12, 40, 700}),
                Arguments.of("header and the start of the frame together", new int[] {30}),
                Arguments.of("header split, its end with the start of the frame", new int[] {4, 20, 1000}),
                Arguments.of("an empty buffer between header and frame", new int[] {12, 12}),
                Arguments.of("one byte per buffer for the header", new int[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}),
                Arguments.of("the frame in many small pieces", new int[] {12, 13, 14, 20, 64, 65, 500, 1499, 1525}));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("layouts")
    void shouldHandThePortExactlyTheFrameWhateverTheDescriptorLayout(String layout, int[] cuts) throws Exception {
        serve(MODERN);
        byte[] f = frame(1514, 1);

        rig.transmit(0, f, cuts);

        assertPortGets(f);
        assertEquals(1, rig.counters(0).txFrames);
        assertEquals(1514, rig.counters(0).txBytes);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("layouts")
    void shouldHandThePortExactlyTheFrameFromAnIndirectTable(String layout, int[] cuts) throws Exception {
        serve(MODERN);
        byte[] f = frame(1514, 2);

        int head = rig.sendIndirect(0, f, cuts);

        assertEquals(new Used(head, 0), rig.awaitTx(0));
        assertPortGets(f);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("layouts")
    void shouldOfferAPortThatTakesPiecesTheFrameAsItLiesInGuestMemory(String layout, int[] cuts) throws Exception {
        serve(MODERN);
        port.takePieces = true;
        byte[] f = frame(1514, 3);

        rig.transmit(0, f, cuts);

        Seen s = port.awaitSeen();
        assertArrayEquals(f, s.frame(), "the frame the port was handed");
        assertEquals(piecesOfFrame(cuts, HEADER, HEADER + f.length), s.pieces(),
                "one piece per buffer the frame touches; a frame in one buffer comes whole");
        assertEquals(1, rig.counters(0).txFrames);
    }

    @Test
    void shouldCopyTheFrameTogetherForAPortThatDoesNotTakeItsPieces() throws Exception {
        serve(MODERN);
        byte[] f = frame(1514, 4);

        rig.transmit(0, f, new int[] {12, 13, 14, 20, 64, 65, 500, 1499, 1525});

        Seen s = port.awaitSeen();
        assertArrayEquals(f, s.frame());
        assertEquals(1, s.pieces(), "handed in one piece");
    }

    /** How many of the buffers that {@code cuts} make of the chain hold some of the bytes {@code [from, to)}. */
    private static int piecesOfFrame(int[] cuts, int from, int to) {
        int n = 0, start = 0;
        for (int i = 0; i <= cuts.length; i++) {
            int end = i < cuts.length ? cuts[i] : Integer.MAX_VALUE;
            if (Math.max(start, from) < Math.min(end, to)) {
                n++;
            }
            start = end;
        }
        return n;
    }

    @Test
    void shouldHandThePortEveryFrameOfRandomSizesAndLayoutsInOrder() throws Exception {
        serve(MODERN);
        Random random = new Random(7);
        long bytes = 0;
        for (int i = 0; i < 200; i++) {
            byte[] f = frame(14 + random.nextInt(1518 - 14 + 1), i);
            int[] cuts = random.ints(random.nextInt(6), 0, HEADER + f.length + 1).sorted().toArray();
            if (random.nextBoolean()) {
                int head = rig.sendIndirect(0, f, cuts);
                assertEquals(new Used(head, 0), rig.awaitTx(0));
            } else {
                rig.transmit(0, f, cuts);
            }
            assertPortGets(f);
            bytes += f.length;
        }
        assertEquals(200, rig.counters(0).txFrames);
        assertEquals(bytes, rig.counters(0).txBytes);
        assertEquals(0, rig.counters(0).txDropped);
    }

    @Test
    void shouldHandThePortEveryFrameInOrderWhenOneBufferAndSplitFramesShareOneKick() throws Exception {
        serve(MODERN);
        int[][] shapes = {{}, {12}, {}, {}, {5, 12}, {}, {12}, {12}, {}, {30}, {}, {}, {12}, {}};
        DriverQueue q = rig.tx(0);
        byte[][] frames = new byte[shapes.length][];
        for (int i = 0; i < shapes.length; i++) { // all made available before the one kick: one batch for the device
            frames[i] = frame(60 + 37 * i, i);
            int head = q.chain(rig.readable(rig.packet(frames[i]), shapes[i]));
            rig.outstanding(1, head);
            q.makeAvailable(head);
        }
        q.kick();

        for (byte[] f : frames) {
            assertPortGets(f);
        }
        for (int i = 0; i < shapes.length; i++) {
            assertEquals(0, rig.awaitTx(0).length(), "transmit chains complete with 0 bytes written");
        }
        assertEquals(shapes.length, rig.counters(0).txFrames);
        assertEquals(0, rig.counters(0).txDropped);
    }

    @ParameterizedTest(name = "mergeable={0}")
    @ValueSource(booleans = {false, true})
    void shouldStripTheTwelveByteHeaderWithVersion1(boolean mergeable) throws Exception {
        serve(MODERN | (mergeable ? MRG_RXBUF : 0));
        byte[] f = frame(100, 3);

        rig.transmit(0, f, 6);

        assertPortGets(f);
    }

    @Test
    void shouldStripTheTenByteLegacyHeaderWithoutVersion1OrMergeableBuffers() throws Exception {
        serve(NetRig.INDIRECT_DESC);
        assertEquals(LEGACY_HEADER, rig.headerLength());
        byte[] f = frame(100, 4);

        rig.transmit(0, f, 3, 10);

        assertPortGets(f);
    }

    @Test
    void shouldStripTheTwelveByteHeaderWithMergeableBuffersEvenWithoutVersion1() throws Exception {
        serve(MRG_RXBUF);
        assertEquals(HEADER, rig.headerLength());
        byte[] f = frame(100, 5);

        rig.transmit(0, f);

        assertPortGets(f);
    }

    // ---- sizes ----------------------------------------------------------------------------------

    @ParameterizedTest(name = "{0} bytes")
    @ValueSource(ints = {0, 1, 13})
    void shouldRefuseAFrameShorterThanAnEthernetHeaderAndStillPassTheNextOne(int length) throws Exception {
        serve(MODERN);

        rig.transmit(0, frame(length, 6));
        byte[] good = frame(14, 7);
        rig.transmit(0, good);

        assertPortGets(good);
        assertNull(port.seen.poll(), "only the good frame reached the port");
        assertEquals(1, rig.counters(0).txDropped);
        assertEquals(1, rig.counters(0).txFrames);
        assertEquals(14, rig.counters(0).txBytes);
    }

    @Test
    void shouldRefuseAChainShorterThanTheHeaderItself() throws Exception {
        serve(MODERN);
        DriverQueue tx = rig.tx(0);

        int head = rig.post(tx.index(), Buffer.readable(rig.put(new byte[7]), 7));

        assertEquals(new Used(head, 0), rig.awaitTx(0));
        assertEquals(1, rig.counters(0).txDropped);
        assertEquals(0, rig.counters(0).txFrames);
    }

    @Test
    void shouldRefuseAHeaderAloneInTheLastBytesOfGuestMemoryAmongGoodFramesOfOneKick() throws Exception {
        serve(MODERN);
        DriverQueue q = rig.tx(0);
        long last = q.ram().size() - HEADER; // a read one byte past this buffer would leave guest memory
        byte[] before = frame(60, 1), after = frame(60, 2);
        Buffer[][] chains = {rig.readable(rig.packet(before)), {Buffer.readable(last, HEADER)},
                rig.readable(rig.packet(after))};
        for (Buffer[] c : chains) { // all made available before the one kick: one burst for the device
            int head = q.chain(c);
            rig.outstanding(1, head);
            q.makeAvailable(head);
        }
        q.kick();

        assertPortGets(before);
        assertPortGets(after);
        for (int i = 0; i < chains.length; i++) {
            assertEquals(0, rig.awaitTx(0).length(), "every chain is used, the header alone too");
        }
        assertEquals(1, rig.counters(0).txDropped);
        assertEquals(2, rig.counters(0).txFrames);
    }

    @Test
    void shouldAcceptFramesUpToMtuPlusEthernetHeaderAndVlanTagAndRefuseLongerOnes() throws Exception {
        serve(MODERN);
        assertEquals(1500 + 18, rig.device.nic().maxFrame());
        byte[] longest = frame(1518, 8);

        rig.transmit(0, frame(1519, 9), 12, 600);
        rig.transmit(0, longest, 12, 600);

        assertPortGets(longest);
        assertNull(port.seen.poll());
        assertEquals(1, rig.counters(0).txDropped);
        assertEquals(1, rig.counters(0).txFrames);
    }

    @Test
    void shouldIgnoreWritableBuffersAfterTheFrame() throws Exception {
        serve(MODERN);
        byte[] f = frame(300, 10);
        Buffer[] readable = rig.readable(rig.packet(f), 12);
        long spare = rig.ram.allocate(64, 8);

        int head = rig.post(rig.tx(0).index(), readable[0], readable[1], Buffer.writable(spare, 64));

        assertEquals(new Used(head, 0), rig.awaitTx(0), "nothing written");
        assertPortGets(f);
    }

    @Test
    void shouldRefuseAnIndirectChainWhenIndirectDescriptorsWereNotNegotiated() throws Exception {
        serve(NetRig.VERSION_1);
        byte[] f = frame(100, 13);
        int bad = rig.sendIndirect(0, f);
        byte[] good = frame(100, 14);

        int next = rig.send(0, good);

        assertEquals(new Used(bad, 0), rig.awaitTx(0));
        assertEquals(new Used(next, 0), rig.awaitTx(0));
        assertPortGets(good);
        assertEquals(1, rig.queueCounters(rig.tx(0).index()).chainsRejected(ChainError.INDIRECT_NOT_NEGOTIATED));
    }
}
