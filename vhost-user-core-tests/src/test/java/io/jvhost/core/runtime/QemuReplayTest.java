package io.jvhost.core.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.DriverQueue.Layout;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.QemuSequences;
import io.jvhost.testkit.frontend.QemuScript;
import io.jvhost.testkit.frontend.QemuScript.Acks;
import io.jvhost.testkit.frontend.QemuSequences.Guest;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.TestDevice;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Replays of what QEMU 7.2 sends to a vhost-user-net device with two queue pairs and to a
 * vhost-user-blk device (reference §4.1, §4.2), through a guest driver reset and QEMU shutdown, and
 * the same sequences cut off after every single step: the backend must serve a whole sequence
 * afterwards and hold no fd or mapping of the sessions that went away. Whole replays run on split
 * rings and on packed ones ({@code packed=on}: RING_PACKED acked, the packed bases of QEMU's layout).
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class QemuReplayTest {
    static final String GUEST_RAM = "/memfd:jvhost-guest-ram";
    /** Where {@code writeback} sits in {@code struct virtio_blk_config} (virtio 1.2 §5.2.4), written out here. */
    static final int SPEC_WCE_OFFSET = 32;
    static final byte[] BLK_CONFIG = blkConfig();

    interface Sequence {
        QemuScript build(Guest g);
    }

    static TestDevice netDevice() {
        return TestDevice.withQueues(4).build();
    }

    /**
     * A {@code struct virtio_blk_config} (virtio 1.2 §5.2.4) of a 1 MiB disk with a write cache and
     * two queues: capacity u64 @0, size_max u32 @8, seg_max u32 @12, geometry @16, blk_size u32 @20,
     * topology @24, writeback u8 @32, unused0 @33, num_queues u16 @34, discard and write-zeroes
     * limits @36..@56.
     */
    static byte[] blkConfig() {
        ByteBuffer b = ByteBuffer.allocate(60).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(0, 2048).putInt(8, 1 << 20).putInt(12, 126).putInt(20, 512).putShort(26, (short) 1);
        b.put(SPEC_WCE_OFFSET, (byte) 1).putShort(34, (short) 2);
        b.putInt(36, 1 << 21).putInt(40, 32).putInt(44, 1).putInt(48, 1 << 21).putInt(52, 32).put(56, (byte) 1);
        return b.array();
    }

    /** Like virtio-blk, the device takes config writes only at the writeback byte. */
    static TestDevice blkDevice() {
        return TestDevice.withQueues(2).config(BLK_CONFIG).writableConfig(SPEC_WCE_OFFSET, 1).build();
    }

    private static void runWhole(BackendFixture fx, int queues, Sequence sequence) throws IOException {
        runWhole(fx, queues, Layout.SPLIT, sequence);
    }

    private static void runWhole(BackendFixture fx, int queues, Layout layout, Sequence sequence) throws IOException {
        try (Guest g = new Guest(queues, layout); Frontend f = fx.connect()) {
            sequence.build(g).run(f);
        }
    }

    /** Runs the sequence and checks the backend let go of everything once the frontend left. */
    private static void replay(TestDevice device, Layout layout, Sequence sequence) throws IOException {
        try (BackendFixture fx = BackendFixture.start(device)) {
            Map<Integer, String> before = fx.fdsWhileIdle();
            long mappedBefore = OpenFds.mappingsOf(GUEST_RAM);
            runWhole(fx, device.queueCount(), layout, sequence);
            Map<Integer, String> after = fx.fdsWhileIdle();
            assertEquals(before.size(), after.size(), () -> "open fds after the session:" + OpenFds.difference(before, after));
            assertEquals(mappedBefore, OpenFds.mappingsOf(GUEST_RAM), "guest RAM unmapped");
            for (int v = 0; v < device.queueCount(); v++) {
                assertEquals(2 * 3, device.seenCount(v),
                        "three requests per queue and driver, each processed once, on queue " + v);
            }
        }
    }

    @ParameterizedTest
    @CsvSource({"QEMU, SPLIT", "EVERY_MESSAGE, SPLIT", "QEMU, PACKED", "EVERY_MESSAGE, PACKED"})
    void shouldServeQemusNetSequenceWithTwoQueuePairsThroughADriverResetAndShutdown(Acks acks, Layout layout)
            throws IOException {
        replay(netDevice(), layout, g -> QemuSequences.net(g, acks));
    }

    @ParameterizedTest
    @CsvSource({"true, QEMU, SPLIT", "true, EVERY_MESSAGE, SPLIT", "false, QEMU, SPLIT", "false, EVERY_MESSAGE, SPLIT",
            "true, QEMU, PACKED", "false, EVERY_MESSAGE, PACKED"})
    void shouldServeQemusBlkSequenceThroughADriverResetAndShutdown(boolean memSlots, Acks acks, Layout layout)
            throws IOException {
        replay(blkDevice(), layout, g -> QemuSequences.blk(g, acks, memSlots, BLK_CONFIG));
    }

    @ParameterizedTest
    @ValueSource(strings = {"net", "blk with memory slots", "blk with memory table"})
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void shouldServeAWholeSequenceAfterADisconnectAfterEveryStepOfOne(String which) throws IOException {
        TestDevice device = which.equals("net") ? netDevice() : blkDevice();
        Sequence sequence = switch (which) {
            case "net" -> g -> QemuSequences.net(g, Acks.QEMU);
            case "blk with memory slots" -> g -> QemuSequences.blk(g, Acks.QEMU, true, BLK_CONFIG);
            default -> g -> QemuSequences.blk(g, Acks.QEMU, false, BLK_CONFIG);
        };
        int queues = device.queueCount();
        try (BackendFixture fx = BackendFixture.start(device)) {
            runWhole(fx, queues, sequence); // warm-up: every class loaded, every lazily opened file open
            Map<Integer, String> before = fx.fdsWhileIdle();
            long mappedBefore = OpenFds.mappingsOf(GUEST_RAM);

            int steps;
            try (Guest g = new Guest(queues)) {
                steps = sequence.build(g).size();
            }
            assertTrue(steps > 50, "a sequence of " + steps + " steps");
            for (int k = 0; k < steps; k++) {
                try (Guest g = new Guest(queues); Frontend f = fx.connect()) {
                    sequence.build(g).runFirst(f, k);
                }
            }

            runWhole(fx, queues, sequence);
            Map<Integer, String> after = fx.fdsWhileIdle();
            assertEquals(before.size(), after.size(),
                    () -> "open fds after " + steps + " cut-off sessions:" + OpenFds.difference(before, after));
            assertEquals(mappedBefore, OpenFds.mappingsOf(GUEST_RAM), "guest RAM of every session unmapped");
        }
    }
}
