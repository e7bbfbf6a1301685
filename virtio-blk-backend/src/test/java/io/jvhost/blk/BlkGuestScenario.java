package io.jvhost.blk;

import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The guest side of the vhost-user-blk end-to-end tests, written once and run against any
 * backend listening on a socket: jvhost, or qemu-storage-daemon as the C reference, which shows
 * the checks test real behaviour. The guest has two vCPUs and a two-queue disk.
 */
final class BlkGuestScenario {
    static final long IMAGE_BYTES = 128L << 20;
    static final int CHUNK_SECTORS = 128;
    static final int SEED = 20261124;
    /** Where the pattern goes, in sectors: start, early, middle, and the very end of the disk. */
    static final long[] OFFSETS = {0, 2048, 100_352, IMAGE_BYTES / 512 - CHUNK_SECTORS};
    private static final Duration BOOT = Duration.ofMinutes(3);
    private static final Duration STEP = Duration.ofMinutes(3);

    private BlkGuestScenario() {}

    /** Boots with the disk arguments of {@code qemu-configs/blk-qemu.sh}, so the published config is tested. */
    static QemuGuest boot(Path socket, Class<?> test) throws IOException, InterruptedException {
        return boot(socket, test, false);
    }

    /** As {@link #boot(Path, Class)}, the disk on packed virtqueues ({@code PACKED=on blk-qemu.sh}) if {@code packed}. */
    static QemuGuest boot(Path socket, Class<?> test, boolean packed) throws IOException, InterruptedException {
        QemuGuest g = QemuGuest.builder().image(GuestImage.prepare()).cpus(2).memoryMib(256)
                .extraArgs(QemuConfigs.deviceArgs(packed, "blk-qemu.sh", socket.toString(), "2"))
                .logFile(packed ? QemuTests.logFile(test).resolveSibling(test.getSimpleName() + "-packed.log")
                        : QemuTests.logFile(test)).build();
        g.start();
        g.awaitReady(BOOT);
        return g;
    }

    static String run(QemuGuest g, String command) {
        QemuGuest.Result r = g.exec(command, STEP);
        assertEquals(0, r.exitStatus(), () -> "guest: " + command + "\n" + r.output());
        return r.output();
    }

    /** Shell that writes one chunk of the seeded per-sector pattern for sector {@code first} to /tmp/chunk. */
    static String makeChunk(long first) {
        return "i=0; while [ $i -lt " + CHUNK_SECTORS + " ]; do printf '%-511s\\n' \"jvhost seed=" + SEED
                + " sector=$((" + first + "+i))\"; i=$((i+1)); done > /tmp/chunk";
    }

    /** The same pattern, made on the host. */
    static byte[] expectedChunk(long first) {
        byte[] out = new byte[CHUNK_SECTORS * 512];
        for (int i = 0; i < CHUNK_SECTORS; i++) {
            byte[] text = String.format("%-511s\n", "jvhost seed=" + SEED + " sector=" + (first + i))
                    .getBytes(StandardCharsets.US_ASCII);
            System.arraycopy(text, 0, out, i * 512, 512);
        }
        return out;
    }

    static void writePattern(QemuGuest g) {
        assertEquals(IMAGE_BYTES + "\n", run(g, "blockdev --getsize64 /dev/vda"));
        for (long off : OFFSETS) {
            run(g, makeChunk(off) + " && dd if=/tmp/chunk of=/dev/vda bs=65536 seek=" + off / CHUNK_SECTORS
                    + " count=1 oflag=direct conv=fsync 2>/dev/null");
        }
    }

    static void checkPatternInGuest(QemuGuest g) {
        for (long off : OFFSETS) {
            run(g, makeChunk(off) + " && dd if=/dev/vda of=/tmp/back bs=65536 skip=" + off / CHUNK_SECTORS
                    + " count=1 iflag=direct 2>/dev/null && cmp /tmp/chunk /tmp/back");
        }
    }

    static void checkPatternOnHost(Path image) throws IOException {
        byte[] disk = Files.readAllBytes(image);
        for (long off : OFFSETS) {
            int at = (int) (off * 512);
            assertArrayEquals(expectedChunk(off), Arrays.copyOfRange(disk, at, at + CHUNK_SECTORS * 512),
                    "image bytes at sector " + off);
        }
    }

    /** mke2fs, mount, write a file, sync, remount, read it back, and trim the free space. */
    static void fileSystemRoundTrip(QemuGuest g) {
        run(g, "mke2fs -q -F /dev/vda >/dev/null");
        run(g, "mkdir -p /mnt && mount -t ext2 /dev/vda /mnt");
        String sum = run(g, "head -c 3000000 /dev/urandom > /mnt/data && md5sum < /mnt/data && sync");
        run(g, "umount /mnt && mount -t ext2 /dev/vda /mnt");
        assertEquals(sum, run(g, "md5sum < /mnt/data"));
        run(g, "fstrim /mnt");
        run(g, "umount /mnt");
    }
}
