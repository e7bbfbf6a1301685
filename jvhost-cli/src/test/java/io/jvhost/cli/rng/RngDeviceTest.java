package io.jvhost.cli.rng;

import io.jvhost.perf.jmh.GuestRing;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Used;

import java.time.Duration;
import java.util.HashSet;
import java.util.Set;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The rng queue handler without a guest: whatever way the driver splits its writable buffers,
 * every byte asked for (up to {@link RngDevice#MAX_REQUEST}) is fresh entropy, and nothing past
 * the cap or in readable buffers is touched.
 */
class RngDeviceTest {
    private static final byte MARK = (byte) 0xA5;
    private GuestRing ring;
    private final RngDevice.Handler handler = new RngDevice.Handler();

    @BeforeEach
    void setUp() throws Exception {
        ring = new GuestRing(16, 1 << 20);
        ring.configure();
    }

    @AfterEach
    void tearDown() {
        ring.close();
    }

    private long marked(int length) {
        long gpa = ring.buffer(length);
        ring.ram.at(gpa, length).fill(MARK);
        return gpa;
    }

    private Used serve(Buffer... buffers) {
        ring.driver.post(buffers);
        assertEquals(1, handler.process(ring.queue, 16));
        return ring.driver.awaitUsed(Duration.ofSeconds(1));
    }

    /** No 8-byte window of entropy occurs twice: a generator restarted per piece would repeat. */
    private static void assertNoRepeats(byte[] bytes) {
        Set<Long> seen = new HashSet<>();
        for (int i = 0; i + 8 <= bytes.length; i += 8) {
            long w = 0;
            for (int j = 0; j < 8; j++) {
                w = w << 8 | (bytes[i + j] & 0xFF);
            }
            assertTrue(seen.add(w), "repeated entropy at byte " + i);
        }
    }

    @Test
    void shouldFillEveryWritableBufferHoweverTheDriverSplitsThem() {
        int[] lengths = {1, 0, 4095, 4097, 3, 8192, 700};
        long readable = marked(32);
        Buffer[] buffers = new Buffer[lengths.length + 1];
        buffers[0] = Buffer.readable(readable, 32);
        int total = 0;
        for (int i = 0; i < lengths.length; i++) {
            buffers[i + 1] = Buffer.writable(marked(Math.max(lengths[i], 1)), lengths[i]);
            total += lengths[i];
        }
        Used u = serve(buffers);
        assertEquals(total, u.length());
        byte[] out = new byte[total];
        int at = 0;
        for (int i = 1; i < buffers.length; i++) {
            int n = buffers[i].length();
            System.arraycopy(ring.ram.at(buffers[i].gpa(), Math.max(n, 1)).toArray(JAVA_BYTE), 0, out, at, n);
            at += n;
        }
        assertNoRepeats(out);
        for (byte b : ring.ram.at(readable, 32).toArray(JAVA_BYTE)) {
            assertEquals(MARK, b, "a readable buffer is never written");
        }
    }

    @Test
    void shouldStopAtTheRequestCap() {
        int length = RngDevice.MAX_REQUEST + 100;
        long a = marked(length);
        Used u = serve(Buffer.writable(a, 1000), Buffer.writable(a + 1000, length - 1000));
        assertEquals(RngDevice.MAX_REQUEST, u.length());
        byte[] out = ring.ram.at(a, length).toArray(JAVA_BYTE);
        assertNoRepeats(java.util.Arrays.copyOf(out, RngDevice.MAX_REQUEST));
        for (int i = RngDevice.MAX_REQUEST; i < length; i++) {
            assertEquals(MARK, out[i], "byte " + i + " lies past the cap");
        }
        assertEquals(0, ring.queue.counters().chainsRejected());
    }
}
