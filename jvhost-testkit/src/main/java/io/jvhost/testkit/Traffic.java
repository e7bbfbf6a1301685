package io.jvhost.testkit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.protocol.MessageType;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;

/** Guest-side traffic through a {@link TestDevice}: echo round trips and their checks. Test thread. */
public final class Traffic {
    public static final Duration USED_TIMEOUT = Duration.ofSeconds(10);

    private Traffic() {
    }

    /** {@code length} bytes that differ with {@code seed}, so one request's data cannot pass for another's. */
    public static byte[] pattern(int length, int seed) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) (seed * 31 + i * 7 + 1);
        }
        return b;
    }

    /** Copies {@code data} into freshly allocated guest memory and returns its gpa. */
    public static long place(GuestRam ram, byte[] data) {
        long gpa = ram.allocate(Math.max(1, data.length), 8);
        MemorySegment.copy(data, 0, ram.at(gpa, data.length), ValueLayout.JAVA_BYTE, 0, data.length);
        return gpa;
    }

    /** An echo request in guest memory: {@code data} to read and as much room to write. */
    public record Request(long inGpa, long outGpa, byte[] data) {
        public Buffer[] buffers() {
            return new Buffer[] {Buffer.readable(inGpa, data.length), Buffer.writable(outGpa, data.length)};
        }

        /** Asserts that the device completed this request by echoing it. */
        public void assertEchoed(GuestRam ram, Used used, int head) {
            assertNotNull(used, "no used element within " + USED_TIMEOUT);
            assertEquals(head, used.id(), "used element names another chain");
            assertEquals(data.length, used.length(), "bytes written");
            assertArrayEquals(data, ram.at(outGpa, data.length).toArray(ValueLayout.JAVA_BYTE), "echoed bytes");
        }
    }

    public static Request request(GuestRam ram, byte[] data) {
        long in = place(ram, data);
        long out = ram.allocate(Math.max(1, data.length), 8);
        return new Request(in, out, data);
    }

    /** Posts one echo request, kicks, waits for its used element and checks the echo. */
    public static void echo(DriverQueue q, int seed) {
        Request r = request(q.ram(), pattern(64 + seed % 64, seed));
        int head = q.post(r.buffers());
        r.assertEchoed(q.ram(), q.awaitUsed(USED_TIMEOUT), head);
    }

    /** {@link #echo} {@code count} times, one request in flight at a time. */
    public static void echo(DriverQueue q, int count, int firstSeed) {
        for (int i = 0; i < count; i++) {
            echo(q, firstSeed + i);
        }
    }

    /**
     * Returns once every used element and interrupt of queue {@code q} that the backend produced
     * so far is complete: re-sending the queue's call fd with NEED_REPLY makes the backend wait
     * for the poller, which takes commands only between duty cycles. The queue must be running.
     */
    public static void quiesce(Frontend f, DriverQueue q) throws IOException {
        assertEquals(0, f.requestWithAck(MessageType.SET_VRING_CALL, Payloads.u64(q.index()), q.callFd()),
                "SET_VRING_CALL refused");
    }
}
