package io.jvhost.core.ring;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static io.jvhost.core.ring.RingFixture.F_INDIRECT;
import static io.jvhost.core.ring.RingFixture.F_NEXT;
import static io.jvhost.core.ring.RingFixture.F_WRITE;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * {@link DescriptorChain#read} gathers the readable buffers and {@link DescriptorChain#write}
 * scatters into the writable ones, as one stream each, from any starting offset and up to any
 * limit, across zero-length buffers and both regions of guest memory.
 */
class DescriptorChainCopyTest {
    private static final long MIB = 1 << 20;
    private static final int GUARD = 16;
    private static final byte MARK = (byte) 0xEE;
    // Lengths of the readable then the writable buffers; the odd ones live in region 1.
    private static final int[] READABLE = {3, 0, 17, 1, 64, 5, 0};
    private static final int[] WRITABLE = {7, 0, 33, 1, 100, 2};

    private RingFixture f;
    private long[] gpas;
    private long nextHigh = MIB + 0x100;

    @BeforeEach
    void setUp() throws Exception {
        f = new RingFixture(16, 2 * MIB, MIB).configure();
    }

    @AfterEach
    void tearDown() {
        f.close();
    }

    /** Places buffer {@code i} of {@code length} with guard bytes around it, alternating regions. */
    private long place(int i, int length) {
        long gpa;
        if (i % 2 == 0) {
            gpa = f.ram.allocate(length + 2L * GUARD, 16) + GUARD;
        } else {
            gpa = nextHigh + GUARD;
            nextHigh += length + 2L * GUARD + 16;
        }
        f.ram.at(gpa - GUARD, length + 2L * GUARD).fill(MARK);
        return gpa;
    }

    /** Writes the buffers as a direct chain (or an indirect table) at descriptor 2; returns the chain. */
    private DescriptorChain chain(boolean indirect) {
        int n = READABLE.length + WRITABLE.length;
        gpas = new long[n];
        int[] lengths = new int[n];
        for (int i = 0; i < n; i++) {
            lengths[i] = i < READABLE.length ? READABLE[i] : WRITABLE[i - READABLE.length];
            gpas[i] = place(i, lengths[i]);
        }
        long table = f.ram.allocate(16L * n, 16);
        for (int i = 0; i < n; i++) {
            int flags = (i < READABLE.length ? 0 : F_WRITE) | (i == n - 1 ? 0 : F_NEXT);
            if (indirect) {
                f.writeIndirect(table, i, gpas[i], lengths[i], flags, i + 1);
            } else {
                f.driver.writeDescriptor(2 + i, gpas[i], lengths[i], flags, 3 + i);
            }
        }
        if (indirect) {
            f.driver.writeDescriptor(2, table, 16 * n, F_INDIRECT, 0);
        }
        f.driver.makeAvailable(2);
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(n, c.count());
        assertEquals(READABLE.length, c.readableCount());
        assertEquals(Arrays.stream(READABLE).sum(), c.readableLength());
        assertEquals(Arrays.stream(WRITABLE).sum(), c.writableLength());
        return c;
    }

    @Test
    void shouldGatherReadableBuffersFromAnyOffsetUpToAnyLimit() {
        DescriptorChain c = chain(false);
        // Fill the readable buffers with one running sequence, the writable ones with noise.
        int total = Arrays.stream(READABLE).sum();
        byte[] stream = new byte[total];
        int pos = 0;
        for (int i = 0; i < READABLE.length; i++) {
            for (int j = 0; j < READABLE[i]; j++, pos++) {
                stream[pos] = (byte) (pos * 7 + 1);
                f.ram.at(gpas[i] + j, 1).set(JAVA_BYTE, 0, stream[pos]);
            }
        }
        for (int i = READABLE.length; i < gpas.length; i++) {
            f.ram.at(gpas[i], WRITABLE[i - READABLE.length]).fill((byte) 0x55);
        }
        for (int skip = 0; skip <= total + 2; skip++) {
            for (int max : new int[] {0, 1, 2, 16, 17, 63, 64, total, total + 5}) {
                byte[] dst = new byte[total + 20];
                Arrays.fill(dst, MARK);
                long n = c.read(skip, MemorySegment.ofArray(dst), 9, max);
                int expected = Math.max(0, Math.min(max, total - skip));
                assertEquals(expected, n, "skip " + skip + " max " + max);
                byte[] want = new byte[total + 20];
                Arrays.fill(want, MARK);
                System.arraycopy(stream, Math.min(skip, total), want, 9, expected);
                assertArrayEquals(want, dst, "skip " + skip + " max " + max);
            }
        }
    }

    @Test
    void shouldScatterIntoWritableBuffersFromAnyOffsetUpToAnyLimit() {
        DescriptorChain c = chain(true);
        int total = Arrays.stream(WRITABLE).sum();
        byte[] src = new byte[total + 11];
        for (int i = 0; i < src.length; i++) {
            src[i] = (byte) (i * 13 + 5);
        }
        for (int skip = 0; skip <= total + 2; skip++) {
            for (int max : new int[] {0, 1, 7, 8, 40, 41, total - skip, total}) {
                if (max < 0) {
                    continue;
                }
                for (int i = 0; i < gpas.length; i++) {
                    int len = i < READABLE.length ? READABLE[i] : WRITABLE[i - READABLE.length];
                    f.ram.at(gpas[i] - GUARD, len + 2L * GUARD).fill(MARK);
                }
                int srcOffset = 3;
                long n = c.write(MemorySegment.ofArray(src), srcOffset, skip, max);
                int expected = Math.max(0, Math.min(max, total - skip));
                assertEquals(expected, n, "skip " + skip + " max " + max);

                // The device-visible stream of writable bytes: MARK except [skip, skip + n).
                int pos = 0;
                for (int i = 0; i < gpas.length; i++) {
                    boolean w = i >= READABLE.length;
                    int len = w ? WRITABLE[i - READABLE.length] : READABLE[i];
                    byte[] want = new byte[len + 2 * GUARD];
                    Arrays.fill(want, MARK);
                    if (w) {
                        for (int j = 0; j < len; j++, pos++) {
                            if (pos >= skip && pos < skip + expected) {
                                want[GUARD + j] = src[srcOffset + pos - skip];
                            }
                        }
                    }
                    assertArrayEquals(want, f.ram.at(gpas[i] - GUARD, len + 2L * GUARD).toArray(JAVA_BYTE),
                            "buffer " + i + " skip " + skip + " max " + max);
                }
            }
        }
    }

    @Test
    void shouldCopyNothingWhenTheChainHasNoBuffersOfThatDirection() {
        long r = f.buffer(32, 1);
        f.driver.writeDescriptor(5, r, 32, 0, 0);
        f.driver.makeAvailable(5);
        DescriptorChain c = f.queue.next();
        assertNotNull(c);
        assertEquals(0, c.write(MemorySegment.ofArray(new byte[64]), 0, 0, 64));
        assertArrayEquals(f.ram.at(r, 32).toArray(JAVA_BYTE), c.segment(0).toArray(JAVA_BYTE));

        long w = f.buffer(32, 1);
        f.driver.writeDescriptor(6, w, 32, F_WRITE, 0);
        f.driver.makeAvailable(6);
        c = f.queue.next();
        assertNotNull(c);
        assertEquals(0, c.read(0, MemorySegment.ofArray(new byte[64]), 0, 64));
        assertEquals(0, c.readableLength());
    }

    @Test
    void shouldExposeEachBufferAsASliceOfGuestMemory() {
        DescriptorChain c = chain(false);
        for (int i = 0; i < c.count(); i++) {
            MemorySegment s = c.segment(i);
            assertEquals(c.length(i), s.byteSize());
            if (c.length(i) > 0) {
                s.set(JAVA_BYTE, 0, (byte) i);
                assertEquals((byte) i, f.ram.at(gpas[i], 1).get(JAVA_BYTE, 0));
                assertEquals(gpas[i] < MIB ? 0 : 1, c.region(i));
            } else {
                assertEquals(-1, c.region(i));
            }
        }
    }
}
