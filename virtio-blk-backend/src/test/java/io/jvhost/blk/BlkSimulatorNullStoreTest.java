package io.jvhost.blk;

import static io.jvhost.core.device.VirtioFeatures.BLK_DISCARD;
import static io.jvhost.core.device.VirtioFeatures.BLK_FLUSH;
import static io.jvhost.core.device.VirtioFeatures.BLK_RO;
import static io.jvhost.core.device.VirtioFeatures.BLK_WRITE_ZEROES;

import io.jvhost.blk.BlkRig.Area;
import io.jvhost.blk.BlkRig.Completion;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;
import io.jvhost.testkit.frontend.DriverQueue.Layout;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.Parameter;
import org.junit.jupiter.params.ParameterizedClass;
import org.junit.jupiter.params.provider.EnumSource;

import static io.jvhost.blk.BlkRig.DISCARD;
import static io.jvhost.blk.BlkRig.FLAG_UNMAP;
import static io.jvhost.blk.BlkRig.FLUSH;
import static io.jvhost.blk.BlkRig.GET_ID;
import static io.jvhost.blk.BlkRig.IN;
import static io.jvhost.blk.BlkRig.IOERR;
import static io.jvhost.blk.BlkRig.OK;
import static io.jvhost.blk.BlkRig.OUT;
import static io.jvhost.blk.BlkRig.SECTOR;
import static io.jvhost.blk.BlkRig.WRITE_ZEROES;
import static io.jvhost.blk.BlkRig.pattern;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The null store behind a real vhost-user socket and split or packed rings in shared guest memory, as
 * qemu-storage-daemon's {@code null-co} behaves: a read is answered OK with its full used length
 * and leaves the guest's buffer as it was, a write goes nowhere, FLUSH, DISCARD and WRITE_ZEROES
 * succeed, and only the status byte changes in guest memory.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
@ParameterizedClass(name = "{0}")
@EnumSource(Layout.class)
class BlkSimulatorNullStoreTest {
    static final long DISK_BYTES = 1L << 40; // a TiB of nothing costs nothing

    /** The guest's rings: the same tests on split and on packed ones. */
    @Parameter
    Layout layout;
    private BlkRig rig;

    private void serve(boolean readOnly) throws Exception {
        rig = BlkRig.serve(new NullStore(DISK_BYTES, readOnly), 1, layout).start();
    }

    @AfterEach
    void close() throws Exception {
        if (rig != null) {
            rig.close();
        }
    }

    @Test
    void shouldAnswerAReadWithItsFullLengthAndOkWithoutTouchingTheGuestsBuffer() throws Exception {
        serve(false);
        Area a = rig.area(16384);
        long header = a.header(IN, 12345);
        long data = a.room(8192);
        long status = a.status();
        a.snapshot();
        a.expectStatus(status, OK);

        Completion c = rig.run(Buffer.readable(header, 16), Buffer.writable(data, 8192), Buffer.writable(status, 1));

        assertEquals(new Completion(8192 + 1, OK), c, "used length: the data and the status byte, as for any read");
        a.assertAsExpected();
    }

    @Test
    void shouldDiscardWritesSoThatAReadOfTheSameSectorsLeavesItsBufferAsItWas() throws Exception {
        serve(false);
        byte[] written = pattern(4096, 3);
        Area a = rig.area(16384);
        long writeHeader = a.header(OUT, 100);
        long at = a.put(written);
        long writeStatus = a.status();
        long readHeader = a.header(IN, 100);
        long into = a.room(4096);
        long readStatus = a.status();
        a.snapshot();
        a.expectStatus(writeStatus, OK);
        a.expectStatus(readStatus, OK);

        assertEquals(new Completion(1, OK), rig.run(Buffer.readable(writeHeader, 16), Buffer.readable(at, 4096),
                Buffer.writable(writeStatus, 1)));
        assertEquals(new Completion(4096 + 1, OK), rig.run(Buffer.readable(readHeader, 16), Buffer.writable(into, 4096),
                Buffer.writable(readStatus, 1)));

        a.assertAsExpected(); // the read buffer still holds the area's fill, not the written pattern
        assertFalse(Arrays.equals(written, a.read(into, 4096)));
    }

    @Test
    void shouldServeTheLastSectorOfAVeryLargeDisk() throws Exception {
        serve(false);
        assertEquals(DISK_BYTES / SECTOR, rig.capacity());
        assertEquals(new Completion(SECTOR + 1, OK), rig.transfer(0, IN, DISK_BYTES / SECTOR - 1, SECTOR));
        assertEquals(new Completion(1, OK), rig.transfer(0, OUT, DISK_BYTES / SECTOR - 1, SECTOR));
    }

    @Test
    void shouldFailAReadPastTheEndWithAnIoErrorAsAnyDiskDoes() throws Exception {
        serve(false);
        assertEquals(new Completion(1, IOERR), rig.transfer(0, IN, DISK_BYTES / SECTOR - 1, 2 * SECTOR));
    }

    @Test
    void shouldOfferFlushDiscardAndWriteZeroesAndCompleteThemWithOk() throws Exception {
        serve(false);
        assertTrue(rig.offers(BLK_FLUSH), "FLUSH");
        assertTrue(rig.offers(BLK_DISCARD), "DISCARD");
        assertTrue(rig.offers(BLK_WRITE_ZEROES), "WRITE_ZEROES");
        assertFalse(rig.offers(BLK_RO), "not read-only");

        assertEquals(new Completion(1, OK), rig.command(0, FLUSH, 0));
        assertEquals(new Completion(1, OK), rig.ranges(DISCARD, new long[] {0, 8, 0}, new long[] {1 << 20, 2048, 0}));
        assertEquals(new Completion(1, OK), rig.ranges(WRITE_ZEROES, new long[] {64, 8, 0}, new long[] {4096, 8, FLAG_UNMAP}));
    }

    @Test
    void shouldAnswerGetIdWithJvhostNull() throws Exception {
        serve(false);
        Area a = rig.area(1024);
        long header = a.header(GET_ID, 0);
        long id = a.room(20);
        long status = a.status();
        a.snapshot();
        a.expect(id, Arrays.copyOf("jvhost-null".getBytes(StandardCharsets.US_ASCII), 20));
        a.expectStatus(status, OK);

        assertEquals(new Completion(20 + 1, OK), rig.run(Buffer.readable(header, 16), Buffer.writable(id, 20),
                Buffer.writable(status, 1)));
        a.assertAsExpected();
    }

    @Test
    void shouldOfferReadOnlyAndFailWritesWithAnIoErrorWhenReadOnly() throws Exception {
        serve(true);
        assertTrue(rig.offers(BLK_RO));
        assertEquals(new Completion(1, IOERR), rig.transfer(0, OUT, 8, 4096));
        assertEquals(new Completion(4096 + 1, OK), rig.transfer(0, IN, 8, 4096));
    }

    @Test
    void shouldRefuseASizeThatIsNotAPositiveMultipleOfASector() {
        assertThrows(IllegalArgumentException.class, () -> new NullStore(0));
        assertThrows(IllegalArgumentException.class, () -> new NullStore(-512));
        assertThrows(IllegalArgumentException.class, () -> new NullStore(1000));
    }
}
