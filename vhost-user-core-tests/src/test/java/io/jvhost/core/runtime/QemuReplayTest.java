package io.jvhost.core.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.QemuSequences;
import io.jvhost.testkit.frontend.QemuScript;
import io.jvhost.testkit.frontend.QemuScript.Acks;
import io.jvhost.testkit.frontend.QemuSequences.Guest;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.OpenFds;
import io.jvhost.testkit.TestDevice;

import java.io.IOException;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Replays of what QEMU 7.2 sends to a vhost-user-net device with two queue pairs and to a
 * vhost-user-blk device (reference §4.1, §4.2), through a guest driver reset and QEMU shutdown, and
 * the same sequences cut off after every single step: the backend must serve a whole sequence
 * afterwards and hold no fd or mapping of the sessions that went away.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class QemuReplayTest {
    static final String GUEST_RAM = "/memfd:jvhost-guest-ram";
    static final byte[] BLK_CONFIG = TestDevice.defaultConfig(32);

    interface Sequence {
        QemuScript build(Guest g);
    }

    static TestDevice netDevice() {
        return TestDevice.withQueues(4).build();
    }

    static TestDevice blkDevice() {
        return TestDevice.withQueues(2).config(BLK_CONFIG).build();
    }

    private static void runWhole(BackendFixture fx, int queues, Sequence sequence) throws IOException {
        try (Guest g = new Guest(queues); Frontend f = fx.connect()) {
            sequence.build(g).run(f);
        }
    }

    /** Runs the sequence and checks the backend let go of everything once the frontend left. */
    private static void replay(TestDevice device, Sequence sequence) throws IOException {
        try (BackendFixture fx = BackendFixture.start(device)) {
            Map<Integer, String> before = fx.fdsWhileIdle();
            long mappedBefore = OpenFds.mappingsOf(GUEST_RAM);
            runWhole(fx, device.queueCount(), sequence);
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
    @EnumSource(Acks.class)
    void shouldServeQemusNetSequenceWithTwoQueuePairsThroughADriverResetAndShutdown(Acks acks) throws IOException {
        replay(netDevice(), g -> QemuSequences.net(g, acks));
    }

    @ParameterizedTest
    @CsvSource({"true, QEMU", "true, EVERY_MESSAGE", "false, QEMU", "false, EVERY_MESSAGE"})
    void shouldServeQemusBlkSequenceThroughADriverResetAndShutdown(boolean memSlots, Acks acks) throws IOException {
        replay(blkDevice(), g -> QemuSequences.blk(g, acks, memSlots, BLK_CONFIG));
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
