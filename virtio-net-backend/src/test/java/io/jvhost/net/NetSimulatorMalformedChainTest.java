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
 * Transmit chains a driver got wrong, on split rings (descriptors rewritten by hand; PackedRingTest
 * has the packed ones): each is refused, counted by its error and completed with 0 bytes, and the
 * next good frame still goes through.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class NetSimulatorMalformedChainTest {
    private ScriptedPort port;
    private NetRig rig;

    private void serve(long features) throws Exception {
        port = new ScriptedPort(1);
        rig = NetRig.serve(port, 1, Layout.SPLIT).start(features);
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

    private void assertPortGets(byte[] frame) throws InterruptedException {
        Seen s = port.awaitSeen();
        assertEquals(0, s.pair());
        assertArrayEquals(frame, s.frame(), "the frame the port was handed");
    }

    /** Ways a driver can get a chain wrong; each rewrites a well-formed two-buffer chain at {@code head}. */
    enum Malformation {
        NEXT_OUT_OF_RANGE(ChainError.NEXT_OUT_OF_RANGE) {
            @Override
            void apply(NetRig rig, DriverQueue q, int head, Buffer[] b) {
                q.writeDescriptor(head, b[0].gpa(), b[0].length(), F_NEXT, q.size());
            }
        },
        LOOP(ChainError.CHAIN_TOO_LONG) {
            @Override
            void apply(NetRig rig, DriverQueue q, int head, Buffer[] b) {
                q.writeDescriptor(head, b[0].gpa(), b[0].length(), F_NEXT, head);
            }
        },
        FRAME_OUTSIDE_GUEST_MEMORY(ChainError.BUFFER_UNMAPPED) {
            @Override
            void apply(NetRig rig, DriverQueue q, int head, Buffer[] b) {
                q.writeDescriptor((head + 1) % q.size(), rig.ram.size() - 8, b[1].length(), 0, 0);
            }
        },
        ADDRESS_WRAPPING_AT_2_TO_THE_64(ChainError.BUFFER_UNMAPPED) {
            @Override
            void apply(NetRig rig, DriverQueue q, int head, Buffer[] b) {
                q.writeDescriptor((head + 1) % q.size(), -16, b[1].length(), 0, 0);
            }
        },
        BUFFER_OF_2_GIB(ChainError.BUFFER_TOO_LONG) {
            @Override
            void apply(NetRig rig, DriverQueue q, int head, Buffer[] b) {
                q.writeDescriptor((head + 1) % q.size(), b[1].gpa(), 0x8000_0000, 0, 0);
            }
        },
        READABLE_AFTER_WRITABLE(ChainError.READABLE_AFTER_WRITABLE) {
            @Override
            void apply(NetRig rig, DriverQueue q, int head, Buffer[] b) {
                q.writeDescriptor(head, b[0].gpa(), b[0].length(), F_NEXT | DriverQueue.F_WRITE, (head + 1) % q.size());
            }
        },
        INDIRECT_TABLE_OF_15_BYTES(ChainError.INDIRECT_BAD_LENGTH) {
            @Override
            void apply(NetRig rig, DriverQueue q, int head, Buffer[] b) {
                q.writeDescriptor(head, rig.ram.allocate(16, 16), 15, F_INDIRECT, 0);
            }
        },
        INDIRECT_TABLE_OUTSIDE_GUEST_MEMORY(ChainError.INDIRECT_UNMAPPED) {
            @Override
            void apply(NetRig rig, DriverQueue q, int head, Buffer[] b) {
                q.writeDescriptor(head, rig.ram.size(), 32, F_INDIRECT, 0);
            }
        };

        final ChainError error;

        Malformation(ChainError error) {
            this.error = error;
        }

        abstract void apply(NetRig rig, DriverQueue q, int head, Buffer[] buffers);
    }

    @ParameterizedTest
    @EnumSource(Malformation.class)
    void shouldCompleteAMalformedChainWithZeroBytesCountItAndStillPassTheNextFrame(Malformation m) throws Exception {
        serve(MODERN);
        DriverQueue tx = rig.tx(0);
        Buffer[] buffers = rig.readable(rig.packet(frame(200, 11)), HEADER);
        int bad = tx.chain(buffers);
        m.apply(rig, tx, bad, buffers);
        rig.outstanding(tx.index(), bad);
        tx.makeAvailable(bad);
        byte[] good = frame(300, 12);

        int next = rig.send(0, good, 3, 40);

        assertEquals(new Used(bad, 0), rig.awaitTx(0));
        assertEquals(new Used(next, 0), rig.awaitTx(0));
        assertPortGets(good);
        assertNull(port.seen.poll(), "nothing of the malformed chain reached the port");
        assertEquals(1, rig.queueCounters(tx.index()).chainsRejected(m.error), "counted as " + m.error);
        assertEquals(1, rig.queueCounters(tx.index()).chainsRejected());
        assertEquals(1, rig.counters(0).txFrames);
        assertEquals(0, rig.counters(0).txDropped, "the queue counts it, not the device");
    }

}
