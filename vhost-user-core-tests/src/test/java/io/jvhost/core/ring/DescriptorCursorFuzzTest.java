package io.jvhost.core.ring;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.core.memory.GuestMemory;
import io.jvhost.core.memory.MemoryMap;
import io.jvhost.core.memory.MemoryMap.RegionSpec;
import io.jvhost.core.sys.Fd;
import io.jvhost.testkit.frontend.GuestRam;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.List;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;

/**
 * Coverage-guided fuzzing (Jazzer) of the descriptor cursor: {@link DescriptorChain#parseSplit} parses a fuzzed
 * descriptor table of 1 to 256 entries from a fuzzed head, with or without INDIRECT_DESC, over a
 * 256 KiB guest memory (a memfd) mapped as [0, 64 KiB), a hole, then two adjacent regions
 * [128, 192) and [192, 256) KiB, with fuzzed indirect tables written into it. Descriptors point
 * anywhere: into a region, across a boundary, into the hole, past the end, near 2^64, at the
 * indirect tables (aligned or not); any length, flags and next.
 *
 * <p>The walk must give a well-formed chain or one of the documented {@link ChainError}s, and nothing
 * else. A finding is any exception (reading outside the table or a region throws), or a chain with
 * no buffer or more than the queue size, a buffer not wholly inside one mapped region, a readable
 * buffer after a writable one, lengths that do not add up, bytes read that differ from guest memory, or
 * a {@link ChainCursor} walk (whole chain, readable or writable stream from a byte in, pieces capped
 * at an odd size) whose pieces skip, repeat or misplace a byte, leave their buffer or region, or
 * carry the wrong direction.
 *
 * <p>Kept inputs: {@code src/test/resources/io/jvhost/core/ring/DescriptorCursorFuzzTestInputs/}.
 */
class DescriptorCursorFuzzTest {
    static final long K = 1024, RAM = 256 * K;
    /** Mapped guest-physical ranges: [start, end) each, one region each. */
    static final long[][] MAPPED = {{0, 64 * K}, {128 * K, 192 * K}, {192 * K, 256 * K}};
    static final long[] EDGES = {0, 64 * K, 128 * K, 192 * K, 256 * K};
    /** Where indirect tables are written: 4 KiB in the first region. */
    static final long TABLES = 0x8000, TABLES_SIZE = 4 * K;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int SCRATCH = 64 * 1024;

    private static GuestRam ram;
    private static MemoryMap map;
    private static GuestMemory memory;
    private static Arena arena;
    private static MemorySegment scratch;
    private static final DescriptorChain[] CHAINS = new DescriptorChain[9];
    private static final ChainCursor CURSOR = new ChainCursor();

    @BeforeAll
    static void mapGuestMemory() throws Exception {
        ram = new GuestRam(RAM, 64 * K, 128 * K, 192 * K);
        map = new MemoryMap();
        Fd[] fds = {ram.fd().dup(), ram.fd().dup(), ram.fd().dup()};
        map.replace(List.of(spec(0), spec(1), spec(2)), fds);
        memory = map.current();
        arena = Arena.ofShared();
        scratch = arena.allocate(SCRATCH);
        for (int i = 0; i < CHAINS.length; i++) {
            CHAINS[i] = new DescriptorChain(1 << i);
        }
    }

    private static RegionSpec spec(int i) {
        long gpa = MAPPED[i][0], size = MAPPED[i][1] - MAPPED[i][0];
        return new RegionSpec(gpa, size, GuestRam.hva(gpa), gpa);
    }

    @AfterAll
    static void unmap() {
        map.close();
        ram.close();
        arena.close();
    }

    @FuzzTest
    void shouldGiveAChainInsideGuestMemoryOrAChainErrorWhateverTheDescriptors(FuzzedDataProvider data) {
        ram.at(0, RAM).fill((byte) 0); // nothing from an earlier input: each one replays alone
        int log2 = data.consumeInt(0, 8);
        int size = 1 << log2;
        boolean indirect = data.consumeBoolean();
        int head = data.consumeInt(0, size - 1);
        long at = TABLES + data.consumeInt(0, 3) * 8L; // where this input's indirect table goes: aligned, or not
        try (Arena a = Arena.ofConfined()) {
            MemorySegment table = a.allocate(16L * size, 16); // exactly the table: reading past it throws
            int written = data.consumeInt(1, size);
            for (int d = 0; d < written; d++) {
                int i = d == 0 ? head : data.consumeInt(0, size - 1);
                writeDescriptor(table, 16L * i, data, size, at);
            }
            int entries = data.consumeInt(0, (int) (TABLES_SIZE / 16) - 1);
            for (int e = 0; e < entries && at + 16L * (e + 1) <= TABLES + TABLES_SIZE; e++) {
                writeDescriptor(ram.at(at + 16L * e, 16), 0, data, entries + 2, at);
            }
            DescriptorChain chain = CHAINS[log2];
            ChainError error = walk(chain, table, size, head, memory, indirect);
            if (error == null) {
                checkChain(chain, size);
                checkCursor(chain);
            } else if (!indirect && error.name().startsWith("INDIRECT_") && error != ChainError.INDIRECT_NOT_NEGOTIATED) {
                throw new AssertionError(error + " without INDIRECT_DESC negotiated");
            }
        }
    }

    // ---- adapter: the only calls into the code under test ----

    /** {@link DescriptorChain#parseSplit}: what {@code VirtQueue.next()} does for each head, without a queue. */
    static ChainError walk(DescriptorChain chain, MemorySegment table, int size, int head, GuestMemory mem, boolean indirect) {
        return chain.parseSplit(table, size, head, mem, indirect);
    }

    /** {@link ChainCursor}: 0 = every buffer, 1 = readable stream, 2 = writable stream, from {@code skip} bytes in. */
    static ChainCursor cursor(DescriptorChain chain, int stream, long skip) {
        return switch (stream) {
            case 0 -> CURSOR.all(chain);
            case 1 -> CURSOR.readable(chain, skip);
            default -> CURSOR.writable(chain, skip);
        };
    }

    // ---- inputs ----

    private static void writeDescriptor(MemorySegment s, long o, FuzzedDataProvider data, int nextRange, long indirectTable) {
        s.set(U64, o, address(data, indirectTable));
        s.set(U32, o + 8, length(data));
        s.set(U16, o + 12, (short) (data.consumeInt(0, 7) == 0 ? data.consumeInt() : data.consumeInt(0, 7)));
        s.set(U16, o + 14, (short) (data.consumeInt(0, 7) == 0 ? data.consumeInt() : data.consumeInt(0, nextRange)));
    }

    private static long address(FuzzedDataProvider data, long indirectTable) {
        return switch (data.consumeInt(0, 8)) {
            case 8 -> indirectTable + 16L * data.consumeInt(0, 15); // this input's indirect table, or inside it
            case 0, 1 -> data.consumeLong(0, 64 * K);
            case 2 -> data.consumeLong(128 * K, RAM);
            case 3 -> EDGES[data.consumeInt(0, EDGES.length - 1)] + data.consumeInt(-32, 32);
            case 4 -> TABLES + 16L * data.consumeInt(0, 255) + data.consumeInt(0, 3) * 8L;
            case 5 -> data.consumeLong(64 * K, 128 * K); // the hole
            case 6 -> -1L - data.consumeInt(0, 4096); // just below 2^64
            default -> data.consumeLong();
        };
    }

    private static int length(FuzzedDataProvider data) {
        return switch (data.consumeInt(0, 4)) {
            case 0, 1 -> data.consumeInt(0, 4096);
            case 2 -> 16 * data.consumeInt(0, 300);
            case 3 -> new int[] {0, 1, 64 * (int) K, 128 * (int) K, 0x7FFF_FFFF, 0x8000_0000, -1, -16}[data.consumeInt(0, 7)];
            default -> data.consumeInt();
        };
    }

    // ---- oracle ----

    private static boolean inOneMappedRegion(long gpa, long length) {
        for (long[] r : MAPPED) {
            if (Long.compareUnsigned(gpa, r[0]) >= 0 && length <= r[1] - r[0] && gpa - r[0] <= r[1] - r[0] - length) {
                return true;
            }
        }
        return false;
    }

    private static void checkChain(DescriptorChain c, int size) {
        if (c.count() < 1 || c.count() > size) {
            throw new AssertionError(c.count() + " buffers in a queue of " + size + ": " + c);
        }
        long readable = 0, writable = 0;
        for (int i = 0; i < c.count(); i++) {
            long n = Integer.toUnsignedLong(c.length(i));
            if (c.length(i) < 0) {
                throw new AssertionError("buffer " + i + " of 2 GiB or more: " + c);
            }
            if (n == 0 ? c.region(i) != -1 : !inOneMappedRegion(c.gpa(i), n)) {
                throw new AssertionError("buffer " + i + " at 0x" + Long.toHexString(c.gpa(i)) + "+" + n
                        + " is not inside one mapped region: " + c);
            }
            if (n > 0 && (c.offset(i) < 0 || c.offset(i) + n > c.memory().segment(c.region(i)).byteSize())) {
                throw new AssertionError("buffer " + i + " outside its region's mapping: " + c);
            }
            if (i > 0 && c.isWritable(i - 1) && !c.isWritable(i)) {
                throw new AssertionError("readable buffer after a writable one: " + c);
            }
            if (c.segment(i).byteSize() != n) {
                throw new AssertionError("segment of " + c.segment(i).byteSize() + " bytes for buffer " + i + ": " + c);
            }
            if (c.isWritable(i)) {
                writable += n;
            } else {
                readable += n;
            }
        }
        if (readable != c.readableLength() || writable != c.writableLength()
                || c.readableCount() + c.writableCount() != c.count()) {
            throw new AssertionError("lengths " + c.readableLength() + "/" + c.writableLength() + ", buffers say "
                    + readable + "/" + writable + ": " + c);
        }
        long want = Math.min(readable, SCRATCH);
        if (c.read(0, scratch, 0, want) != want) {
            throw new AssertionError("read fewer than " + want + " readable bytes: " + c);
        }
        for (int i = 0, done = 0; i < c.readableCount() && done < want; i++) {
            long n = Math.min(c.length(i), want - done);
            if (n > 0 && MemorySegment.mismatch(scratch, done, done + n, ram.at(c.gpa(i), n), 0, n) != -1) {
                throw new AssertionError("bytes read from buffer " + i + " differ from guest memory: " + c);
            }
            done += (int) n;
        }
        long room = Math.min(writable, SCRATCH);
        scratch.asSlice(0, room).fill((byte) 0x5A);
        if (c.write(scratch, 0, 0, room) != room) {
            throw new AssertionError("wrote fewer than " + room + " writable bytes: " + c);
        }
        for (int i = c.readableCount(), done = 0; i < c.count() && done < room; i++) {
            long n = Math.min(c.length(i), room - done);
            if (n > 0 && (ram.at(c.gpa(i), n).get(JAVA_BYTE, 0) != 0x5A || ram.at(c.gpa(i), n).get(JAVA_BYTE, n - 1) != 0x5A)) {
                throw new AssertionError("write did not land in buffer " + i + ": " + c);
            }
            done += (int) n;
        }
    }

    /** Walks {@code c} with the cursor three ways, each with pieces of at most {@code max} bytes. */
    private static void checkCursor(DescriptorChain c) {
        long total = c.readableLength() + c.writableLength();
        for (long max : new long[] {Long.MAX_VALUE, 1000}) {
            walkStream(c, 0, 0, c.count(), 0, total, max);
            walkStream(c, 1, 0, c.readableCount(), c.readableLength() / 3, c.readableLength(), max);
            walkStream(c, 2, c.readableCount(), c.count(), c.writableLength() / 2, c.writableLength(), max);
        }
    }

    /** One walk over buffers [from, to) from {@code skip} bytes in: pieces must be exactly those bytes, in order. */
    private static void walkStream(DescriptorChain c, int stream, int from, int to, long skip, long streamLength, long max) {
        ChainCursor b = cursor(c, stream, skip);
        int buffer = from;
        long in = skip; // bytes of the stream before the expected piece
        long before = 0; // stream bytes in buffers before {@code buffer}
        while (buffer < to && before + Integer.toUnsignedLong(c.length(buffer)) <= in) {
            before += Integer.toUnsignedLong(c.length(buffer));
            buffer++;
        }
        while (b.next(max)) {
            while (buffer < to && before + Integer.toUnsignedLong(c.length(buffer)) <= in) {
                before += Integer.toUnsignedLong(c.length(buffer));
                buffer++;
            }
            long at = in - before;
            if (buffer >= to || b.buffer() != buffer || b.length() <= 0 || b.length() > max
                    || at + b.length() > c.length(buffer)) {
                throw new AssertionError(String.format("stream %d from %d: piece in buffer %d of %d bytes, expected buffer %d at %d: %s",
                        stream, skip, b.buffer(), b.length(), buffer, at, c));
            }
            if (b.gpa() != c.gpa(buffer) + at || b.isWritable() != c.isWritable(buffer)
                    || b.memory().address() != memory.segment(c.region(buffer)).address()
                    || b.offset() != c.offset(buffer) + at || b.offset() + b.length() > b.memory().byteSize()) {
                throw new AssertionError(String.format("stream %d: piece at gpa 0x%x offset %d of buffer %d misplaced: %s",
                        stream, b.gpa(), b.offset(), buffer, c));
            }
            in += b.length();
        }
        if (b.length() != 0 || in != streamLength) {
            throw new AssertionError(String.format("stream %d from %d ended at %d of %d bytes: %s", stream, skip, in, streamLength, c));
        }
    }
}
