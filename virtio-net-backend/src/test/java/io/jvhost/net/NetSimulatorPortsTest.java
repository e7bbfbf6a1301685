package io.jvhost.net;

import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.net.NetRig.RxFrame;

import io.jvhost.core.protocol.MessageType;

import io.jvhost.testkit.frontend.DriverQueue;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

import static io.jvhost.net.NetRig.GUEST_MAC;
import static io.jvhost.net.NetRig.HEADER;
import static io.jvhost.net.NetRig.MODERN;
import static io.jvhost.net.NetRig.MRG_RXBUF;
import static io.jvhost.net.NetRig.frame;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** The bench ports end to end: a simulated guest on one side of a real socket, the port on the other. */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NetSimulatorPortsTest {
    static final long PEER_MAC = 0x02_00_00_00_00_42L;
    private NetRig rig;

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    /** {@code frame} with its destination and source MACs swapped. */
    static byte[] swapped(byte[] frame) {
        byte[] r = frame.clone();
        System.arraycopy(frame, 0, r, 6, 6);
        System.arraycopy(frame, 6, r, 0, 6);
        return r;
    }

    // ---- Reflect --------------------------------------------------------------------------------

    @ParameterizedTest(name = "mergeable={0}")
    @ValueSource(booleans = {false, true})
    void shouldSendEveryFrameBackToTheGuestWithTheMacsSwapped(boolean mergeable) throws Exception {
        rig = NetRig.serve(new BenchPorts.Reflect(), 1).start(MODERN | (mergeable ? MRG_RXBUF : 0));
        rig.postRx(0, 12, mergeable ? 512 : 2048);
        byte[][] frames = {frame(PEER_MAC, GUEST_MAC, 60, 1), frame(PEER_MAC, GUEST_MAC, 1514, 2),
            frame(Frames.BROADCAST, GUEST_MAC, 342, 3)};

        for (byte[] f : frames) {
            rig.transmit(0, f, 5, 12, 40);
            assertArrayEquals(swapped(f), rig.awaitFrame(0).frame());
        }

        NetCounters c = rig.counters(0);
        assertEquals(3, c.txFrames);
        assertEquals(3, c.rxFrames);
        assertEquals(c.txBytes, c.rxBytes);
        assertEquals(0, c.rxDropped);
    }

    /**
     * The frames of one transmit batch go back together, as a burst into buffers of one per frame;
     * a frame that needs several buffers goes the frame-by-frame way between them, in its place.
     */
    @ParameterizedTest(name = "mergeable={0}, buffers of {1}")
    @CsvSource({"false, 2048", "true, 2048", "true, 512"})
    void shouldReflectABatchOfFramesInOrderWhateverBuffersTheyNeed(boolean mergeable, int buffer) throws Exception {
        rig = NetRig.serve(new BenchPorts.Reflect(), 1).start(MODERN | (mergeable ? MRG_RXBUF : 0));
        int n = 40;
        rig.postRx(0, mergeable && buffer < 2048 ? 4 * n : n, buffer);
        DriverQueue tx = rig.tx(0);
        byte[][] frames = new byte[n][];
        int[] heads = new int[n];
        for (int i = 0; i < n; i++) {
            frames[i] = frame(PEER_MAC, GUEST_MAC, i % 3 == 0 ? 1514 : 60 + i, 10 + i);
            heads[i] = tx.chain(rig.readable(rig.packet(frames[i])));
            rig.outstanding(1, heads[i]);
        }
        for (int head : heads) {
            tx.makeAvailable(head);
        }
        tx.kick();

        for (int i = 0; i < n; i++) {
            assertArrayEquals(swapped(frames[i]), rig.awaitFrame(0).frame(), "frame " + i);
        }
        NetCounters c = rig.counters(0);
        assertEquals(n, c.txFrames);
        assertEquals(n, c.rxFrames);
        assertEquals(c.txBytes, c.rxBytes);
        assertEquals(0, c.rxDropped);
    }

    @Test
    void shouldCountAReflectedFrameThatFindsNoReceiveBufferAsDropped() throws Exception {
        rig = NetRig.serve(new BenchPorts.Reflect(), 1).start(MODERN);
        byte[] lost = frame(PEER_MAC, GUEST_MAC, 100, 4), kept = frame(PEER_MAC, GUEST_MAC, 100, 5);

        rig.transmit(0, lost);
        assertEquals(1, rig.counters(0).rxDropped, "the frame the guest had no buffer for");
        rig.postRx(0, 1, 2048);
        rig.transmit(0, kept);

        assertArrayEquals(swapped(kept), rig.awaitFrame(0).frame());
        rig.assertNothingMoreUsed(0);
        assertEquals(1, rig.counters(0).rxFrames);
        assertEquals(2, rig.counters(0).txFrames);
    }

    /** Answers each frame with {@code copies} copies of it in one burst, noting how many the guest could see before its batch ended. */
    static final class Answer implements NetPort {
        private final MemorySegment out = Arena.ofAuto().allocate(2048);
        private final MemorySegment[] frames = new MemorySegment[16];
        private final long[] offsets = new long[16], lengths = new long[16];
        volatile DriverQueue rx;
        volatile int seenBeforePublish = -1;

        @Override
        public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length) {
            MemorySegment.copy(memory, offset, out, 0, length);
            java.util.Arrays.fill(frames, out);
            java.util.Arrays.fill(lengths, length);
            int before = rx.usedIdx();
            nic.deliver(pair, frames, offsets, lengths, frames.length);
            seenBeforePublish = (rx.usedIdx() - before) & 0xFFFF;
        }
    }

    @Test
    void shouldShowTheGuestTheAnswersToItsFrameAsTheyAreWrittenBeforeTheBatchIsPublished() throws Exception {
        Answer port = new Answer();
        rig = NetRig.serve(port, 1).start(MODERN);
        port.rx = rig.rx(0);
        rig.postRx(0, 16, 2048);
        byte[] f = frame(PEER_MAC, GUEST_MAC, 60, 7);

        rig.transmit(0, f);

        for (int i = 0; i < 16; i++) {
            assertArrayEquals(f, rig.awaitFrame(0).frame(), "answer " + i);
        }
        assertEquals(16, port.seenBeforePublish, "every group of answers shown as soon as it was written");
        assertEquals(16, rig.counters(0).rxFrames);
        rig.assertNothingMoreUsed(0);
    }

    // ---- the README's Echo ----------------------------------------------------------------------

    /** The README's example port, as written there: it answers every frame in place with {@code deliver}. */
    static final class Echo implements NetPort {
        private final MemorySegment out = Arena.ofAuto().allocate(65536);

        @Override
        public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length) {
            MemorySegment.copy(memory, offset, out, 0, length);
            Frames.putMac(out, 0, Frames.source(memory, offset));
            Frames.putMac(out, 6, Frames.destination(memory, offset));
            nic.deliver(pair, out, 0, length);
        }
    }

    /**
     * The README's Echo port relies on onFrame running on the pair's poller; with SEND_RARP
     * arriving among the guest's frames every frame and every announcement still comes back.
     */
    @Test
    void shouldEchoEveryFrameAndEveryRarpAnnouncementWithTheReadmesPort() throws Exception {
        rig = NetRig.serve(new Echo(), 1).start(MODERN);
        int rounds = 10, perRound = 12;
        rig.postRx(0, rounds * (perRound + 1), 2048);
        byte[] payload = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0};
        List<byte[]> sent = new ArrayList<>();

        for (int r = 0; r < rounds; r++) {
            for (int i = 0; i < perRound; i++) {
                byte[] f = frame(PEER_MAC, GUEST_MAC, 60 + 7 * i, r * perRound + i);
                sent.add(f);
                rig.send(0, f);
            }
            assertEquals(0, rig.frontend.request(MessageType.SEND_RARP, payload), "SEND_RARP acked");
            for (int i = 0; i < perRound; i++) {
                rig.awaitTx(0);
            }
        }

        int rarps = 0, echoed = 0;
        for (int n = 0; n < rounds * (perRound + 1); n++) {
            byte[] f = rig.awaitFrame(0).frame();
            if ((f[12] & 0xFF) == 0x80 && f[13] == 0x35) {
                assertEquals(GUEST_MAC, Frames.destination(MemorySegment.ofArray(f), 0), "the announcement, MACs swapped");
                rarps++;
            } else {
                assertArrayEquals(swapped(sent.get(echoed)), f, "guest frame " + echoed + ", in order");
                echoed++;
            }
        }
        assertEquals(rounds, rarps);
        assertEquals(sent.size(), echoed);
        rig.assertNothingMoreUsed(0);
    }

    // ---- Drop -----------------------------------------------------------------------------------

    @Test
    void shouldTakeAndCountEveryFrameAndSendNothingBack() throws Exception {
        rig = NetRig.serve(new BenchPorts.Drop(), 1).start(MODERN | MRG_RXBUF);
        rig.postRx(0, 4, 2048);
        long bytes = 0;

        for (int i = 0; i < 50; i++) {
            byte[] f = frame(PEER_MAC, GUEST_MAC, 60 + 29 * i, i);
            rig.transmit(0, f, i % 13);
            bytes += f.length;
        }

        rig.assertNothingMoreUsed(0);
        NetCounters c = rig.counters(0);
        assertEquals(50, c.txFrames);
        assertEquals(bytes, c.txBytes);
        assertEquals(0, c.rxFrames);
        assertEquals("drop: to guest 0 (dropped 0), from guest 50 (refused 0)", rig.device.port().describe());
    }

    // ---- Generate -------------------------------------------------------------------------------

    /** Checks a generated frame: UDP/IPv4 to the guest's MAC, of the configured size, with a valid IP checksum. */
    private static void assertGenerated(byte[] f, int size) {
        assertEquals(size, f.length);
        ByteBuffer b = ByteBuffer.wrap(f);
        assertEquals(GUEST_MAC, Frames.destination(MemorySegment.ofArray(f), 0), "to the guest");
        assertEquals(0x0800, b.getShort(12) & 0xFFFF, "IPv4");
        assertEquals(0x45, f[14] & 0xFF);
        assertEquals(size - 14, b.getShort(16) & 0xFFFF, "IP total length");
        assertEquals(17, f[23], "UDP");
        int sum = 0;
        for (int i = 14; i < 34; i += 2) {
            sum += b.getShort(i) & 0xFFFF;
        }
        while (sum > 0xFFFF) {
            sum = (sum & 0xFFFF) + (sum >>> 16);
        }
        assertEquals(0xFFFF, sum, "IP header checksum");
        assertEquals(size - 34, b.getShort(38) & 0xFFFF, "UDP length");
    }

    @ParameterizedTest(name = "{0} bytes, mergeable={1}, buffers of {2}")
    @CsvSource({"60, false, 2048", "1518, false, 2048", "1518, true, 512", "60, true, 2048"})
    void shouldFillEveryReceiveBufferTheGuestPostsAndWaitForMore(int size, boolean mergeable, int buffer) throws Exception {
        rig = NetRig.serve(new BenchPorts.Generate(size), 1).start(MODERN | (mergeable ? MRG_RXBUF : 0));
        int perFrame = mergeable ? (HEADER + size + buffer - 1) / buffer : 1;

        for (int round = 0; round < 3; round++) {
            rig.postRx(0, 4 * perFrame, buffer);
            for (int i = 0; i < 4; i++) {
                RxFrame r = rig.awaitFrame(0);
                assertEquals(perFrame, r.chains().size());
                assertGenerated(r.frame(), size);
            }
            rig.assertNothingMoreUsed(0);
        }
        assertEquals(12, rig.counters(0).rxFrames);
        assertEquals(12L * size, rig.counters(0).rxBytes);
    }

    @Test
    void shouldCountWhatTheGuestSendsToAGeneratorAndDropIt() throws Exception {
        rig = NetRig.serve(new BenchPorts.Generate(60), 1).start(MODERN);
        int head = rig.send(0, frame(PEER_MAC, GUEST_MAC, 100, 6));

        assertEquals(new Used(head, 0), rig.awaitTx(0));
        assertEquals(1, rig.counters(0).txFrames);
    }
}
