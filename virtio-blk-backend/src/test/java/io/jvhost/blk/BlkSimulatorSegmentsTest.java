package io.jvhost.blk;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import java.nio.file.Path;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

import static io.jvhost.blk.BlkRig.GET_ID;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.headerBytes;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Requests framed every way the spec allows: data in many descriptors, header or status sharing a
 * descriptor with data, a header split in two, empty descriptors, odd-sized pieces, indirect
 * tables, and many requests in flight at once; on a RAM disk and an image file on each I/O engine
 * (io_uring gets the pieces as one iovec array).
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
@ParameterizedClass
@EnumSource(TestDisk.Kind.class)
class BlkSimulatorSegmentsTest {
    static final int DISK_BYTES = 1 << 20;

    @Parameter
    TestDisk.Kind kind;
    @TempDir
    Path dir;
    private TestDisk testDisk;
    private BlkRig rig;
    private ExpectedDisk disk;

    @BeforeEach
    void serve() throws Exception {
        testDisk = TestDisk.open(kind, dir, DISK_BYTES);
        disk = new ExpectedDisk(testDisk.contents(), 11);
        rig = BlkRig.serve(testDisk.store(), 1).start();
    }

    @AfterEach
    void close() throws Exception {
        try {
            if (rig != null) {
                rig.close();
            }
        } finally {
            if (testDisk != null) {
                testDisk.close();
            }
        }
    }

    /** Header, {@code pieces} buffers of {@code pieceLength} bytes each, status. */
    private static Buffer[] scattered(Area a, int type, long sector, int pieces, int pieceLength, byte[] data) {
        List<Buffer> b = new ArrayList<>();
        b.add(Buffer.readable(a.header(type, sector), 16));
        for (int i = 0; i < pieces; i++) {
            long at = type == IN ? a.room(pieceLength) : a.put(Arrays.copyOfRange(data, i * pieceLength, (i + 1) * pieceLength));
            b.add(new Buffer(at, pieceLength, type == IN));
        }
        b.add(Buffer.writable(a.status(), 1));
        return b.toArray(new Buffer[0]);
    }

    /** The bytes the device wrote into the data buffers of a read made by {@link #scattered}. */
    private static byte[] gather(Area a, Buffer[] buffers) {
        byte[] out = new byte[0];
        for (int i = 1; i < buffers.length - 1; i++) {
            byte[] piece = a.read(buffers[i].gpa(), buffers[i].length());
            byte[] grown = Arrays.copyOf(out, out.length + piece.length);
            System.arraycopy(piece, 0, grown, out.length, piece.length);
            out = grown;
        }
        return out;
    }

    @Test
    void shouldWriteAndReadBackThroughSixtyFourDescriptorsOfOneSectorEach() {
        byte[] data = pattern(64 * SECTOR, 3);
        Area a = rig.area(2 * 64 * (SECTOR + 128) + 4096);
        disk.expect(200, data);

        assertEquals(new Completion(1, OK), rig.run(scattered(a, OUT, 200, 64, SECTOR, data)));
        disk.assertMatches();

        Buffer[] read = scattered(a, IN, 200, 64, SECTOR, null);
        assertEquals(new Completion(64 * SECTOR + 1, OK), rig.run(read));
        assertArrayEquals(data, gather(a, read));
    }

    @Test
    void shouldTakeTheHeaderAndDataOfAWriteFromOneDescriptor() {
        byte[] data = pattern(1024, 4);
        byte[] both = new byte[16 + data.length];
        System.arraycopy(headerBytes(OUT, 30), 0, both, 0, 16);
        System.arraycopy(data, 0, both, 16, data.length);
        Area a = rig.area(4096);
        long at = a.put(both);
        long status = a.status();
        disk.expect(30, data);

        assertEquals(new Completion(1, OK), rig.run(Buffer.readable(at, both.length), Buffer.writable(status, 1)));
        disk.assertMatches();
    }

    @Test
    void shouldPutTheDataAndStatusOfAReadIntoOneDescriptor() {
        Area a = rig.area(4096);
        long header = a.header(IN, 30);
        long both = a.room(1024 + 1);
        a.snapshot();
        a.expect(both, disk.bytes(30, 1024));
        a.expectStatus(both + 1024, OK);

        assertEquals(new Completion(1024 + 1, OK), rig.run(Buffer.readable(header, 16), Buffer.writable(both, 1024 + 1)));
        a.assertAsExpected();
    }

    @Test
    void shouldReadAHeaderSplitAcrossTwoDescriptors() {
        byte[] data = pattern(1024, 5);
        Area a = rig.area(8192);
        long writeHeader = a.header(OUT, 40);
        long at = a.put(data);
        long readHeader = a.header(IN, 40);
        long room = a.room(1024);
        long status = a.status();
        disk.expect(40, data);

        assertEquals(new Completion(1, OK), rig.run(Buffer.readable(writeHeader, 7), Buffer.readable(writeHeader + 7, 9),
                Buffer.readable(at, 1024), Buffer.writable(status, 1)));
        disk.assertMatches();
        assertEquals(new Completion(1024 + 1, OK), rig.run(Buffer.readable(readHeader, 1), Buffer.readable(readHeader + 1, 15),
                Buffer.writable(room, 1024), Buffer.writable(status, 1)));
        assertArrayEquals(data, a.read(room, 1024));
    }

    @Test
    void shouldReadAHeaderWhoseSecondHalfSharesADescriptorWithTheData() {
        byte[] data = pattern(1024, 6);
        byte[] tail = new byte[6 + 300];
        System.arraycopy(headerBytes(OUT, 50), 10, tail, 0, 6);
        System.arraycopy(data, 0, tail, 6, 300);
        Area a = rig.area(8192);
        long head = a.put(Arrays.copyOf(headerBytes(OUT, 50), 10));
        long mixed = a.put(tail);
        long rest = a.put(Arrays.copyOfRange(data, 300, 1024));
        long status = a.status();
        disk.expect(50, data);

        assertEquals(new Completion(1, OK), rig.run(Buffer.readable(head, 10), Buffer.readable(mixed, tail.length),
                Buffer.readable(rest, 1024 - 300), Buffer.writable(status, 1)));
        disk.assertMatches();
    }

    @Test
    void shouldCarryDataInPiecesThatAreNotWholeSectorsAsLongAsTheTotalIs() {
        byte[] data = pattern(3 * SECTOR, 7);
        int[] cuts = {0, 1, 100, 613, 1000, 1535, 1536};
        Area a = rig.area(8192);
        List<Buffer> write = new ArrayList<>(List.of(Buffer.readable(a.header(OUT, 60), 16)));
        List<Buffer> read = new ArrayList<>(List.of(Buffer.readable(a.header(IN, 60), 16)));
        List<Long> rooms = new ArrayList<>();
        for (int i = 0; i + 1 < cuts.length; i++) {
            int n = cuts[i + 1] - cuts[i];
            write.add(Buffer.readable(a.put(Arrays.copyOfRange(data, cuts[i], cuts[i + 1])), n));
            long room = a.room(n);
            rooms.add(room);
            read.add(Buffer.writable(room, n));
        }
        long status = a.status();
        write.add(Buffer.writable(status, 1));
        read.add(Buffer.writable(status, 1));
        disk.expect(60, data);

        assertEquals(new Completion(1, OK), rig.run(write.toArray(new Buffer[0])));
        disk.assertMatches();
        assertEquals(new Completion(3 * SECTOR + 1, OK), rig.run(read.toArray(new Buffer[0])));
        for (int i = 0; i + 1 < cuts.length; i++) {
            assertArrayEquals(Arrays.copyOfRange(data, cuts[i], cuts[i + 1]), a.read(rooms.get(i), cuts[i + 1] - cuts[i]));
        }
    }

    @Test
    void shouldSkipEmptyDescriptorsAnywhereInTheChain() {
        byte[] data = pattern(1024, 8);
        Area a = rig.area(8192);
        long header = a.header(OUT, 70);
        long first = a.put(Arrays.copyOf(data, 512));
        long second = a.put(Arrays.copyOfRange(data, 512, 1024));
        long readHeader = a.header(IN, 70);
        long room = a.room(1024);
        long status = a.status();
        disk.expect(70, data);

        assertEquals(new Completion(1, OK), rig.run(Buffer.readable(header, 16), Buffer.readable(first, 0),
                Buffer.readable(first, 512), Buffer.readable(second, 0), Buffer.readable(second, 512),
                Buffer.writable(status, 0), Buffer.writable(status, 1), Buffer.writable(status, 0)));
        disk.assertMatches();

        a.snapshot();
        a.expect(room, data);
        a.expectStatus(status, OK);
        assertEquals(new Completion(1024 + 1, OK), rig.run(Buffer.readable(readHeader, 0), Buffer.readable(readHeader, 16),
                Buffer.writable(room, 0), Buffer.writable(room, 512), Buffer.writable(room + 512, 0),
                Buffer.writable(room + 512, 512), Buffer.writable(status, 1), Buffer.writable(status, 0)));
        a.assertAsExpected();
    }

    @Test
    void shouldServeRequestsWhoseDescriptorsAreInIndirectTables() {
        byte[] data = pattern(64 * SECTOR, 9);
        Area a = rig.area(2 * 64 * (SECTOR + 128) + 8192);
        disk.expect(300, data);

        assertEquals(new Completion(1, OK), rig.runIndirect(0, scattered(a, OUT, 300, 64, SECTOR, data)));
        disk.assertMatches();

        Buffer[] read = scattered(a, IN, 300, 64, SECTOR, null);
        assertEquals(new Completion(64 * SECTOR + 1, OK), rig.runIndirect(0, read));
        assertArrayEquals(data, gather(a, read));

        long header = a.header(GET_ID, 0);
        long id = a.room(20 + 1);
        assertEquals(new Completion(20 + 1, OK), rig.runIndirect(0, Buffer.readable(header, 16), Buffer.writable(id, 21)));
        assertArrayEquals(Arrays.copyOf(rig.store.id().getBytes(StandardCharsets.US_ASCII), 20), a.read(id, 20));
    }

    @Test
    void shouldCompleteEveryOneOfManyRequestsInFlightAtOnce() {
        int requests = 60; // 3 descriptors each, within the 256 of the ring
        Area a = rig.area(requests * (4096 + 512));
        Map<Integer, Long> statusOf = new java.util.HashMap<>();
        for (int i = 0; i < requests; i++) {
            byte[] data = pattern(2048, 100 + i);
            long header = a.header(OUT, 400 + 4L * i);
            long at = a.put(data);
            long status = a.status();
            disk.expect(400 + 4L * i, data);
            statusOf.put(rig.post(0, Buffer.readable(header, 16), Buffer.readable(at, 2048), Buffer.writable(status, 1)),
                    status);
        }

        Map<Integer, Integer> used = rig.awaitAll(0, requests);

        assertEquals(statusOf.keySet(), used.keySet(), "every head completed once");
        for (Map.Entry<Integer, Long> e : statusOf.entrySet()) {
            assertEquals(1, used.get(e.getKey()), "used length of head " + e.getKey());
            assertEquals(OK, a.read(e.getValue(), 1)[0], "status of head " + e.getKey());
        }
        disk.assertMatches();
    }
}
