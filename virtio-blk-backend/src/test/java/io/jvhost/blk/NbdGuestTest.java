package io.jvhost.blk;

import io.jvhost.blk.nbd.NbdStore;
import io.jvhost.blk.nbd.NbdUri;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.testkit.DiskRounds;
import io.jvhost.testkit.NbdServer;
import io.jvhost.testkit.QemuConfigs;
import io.jvhost.testkit.QemuTests;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.blk.BlkGuestScenario.CHUNK_SECTORS;
import static io.jvhost.blk.BlkGuestScenario.expectedChunk;
import static io.jvhost.blk.BlkGuestScenario.makeChunk;
import static io.jvhost.blk.BlkGuestScenario.run;
import static io.jvhost.blk.NbdStoreTest.fileBytes;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A real QEMU 7.2 guest with three jvhost disks on NBD exports of qemu-nbd, one boot for all:
 * vda over a Unix socket with two queues (the published blk-qemu.sh arguments), vdb over TCP with
 * one queue, vdc over TLS with two queues. Every disk takes a pattern the host then finds in the
 * exported image file; vdc carries a file system round trip with fstrim; vda keeps writing while
 * qemu-nbd is killed and restarted, and the guest sees no error.
 */
@Tag("qemu")
@Timeout(value = 15, unit = TimeUnit.MINUTES)
class NbdGuestTest {
    static final long MIB = 1 << 20;
    static final Duration BOOT = Duration.ofMinutes(3), STEP = Duration.ofMinutes(3);
    static final int ROUND_BYTES = 1 << 20;

    /** One disk: its image, qemu-nbd, the NBD store and the vhost-user backend in front of it. */
    record Disk(String name, Path image, long bytes, NbdServer server, NbdStore store, Backend backend, VhostUserServer socket) {}

    @Test
    void shouldServeGuestDisksOverUnixTcpAndTlsAndRideOutAServerRestart() throws Exception {
        QemuTests.requireQemu();
        NbdServer.require();
        Path dir = Files.createTempDirectory("jvhost-nbd-guest");
        Path creds = NbdServer.tlsCredentials(dir.resolve("tls"), false);
        String[] tls = {"--object", "tls-creds-x509,id=tls0,dir=" + creds + ",endpoint=server", "--tls-creds=tls0"};
        List<AutoCloseable> resources = new ArrayList<>();
        ControlLoop loop = new ControlLoop();
        long started = System.nanoTime();
        try {
            Disk unix = disk(dir, "unix", 128 * MIB, 2, loop, resources, image -> NbdServer.qemuNbdUnix(image,
                    dir.resolve("unix.nbd"), "unix", "--discard=unmap"), s -> "nbd+unix:///unix?socket=" + s.socket(), null);
            Disk tcp = disk(dir, "tcp", 64 * MIB, 1, loop, resources, image -> NbdServer.qemuNbdTcp(image, 0, "tcp",
                    "--discard=unmap"), s -> "nbd://127.0.0.1:" + s.port() + "/tcp", null);
            Disk secure = disk(dir, "tls", 96 * MIB, 2, loop, resources, image -> NbdServer.qemuNbdTcp(image, 0, "tls",
                    concat(tls, "--discard=unmap")), s -> "nbds://127.0.0.1:" + s.port() + "/tls", creds);

            List<String> args = new ArrayList<>(QemuConfigs.deviceArgs("blk-qemu.sh", unix.socket().path().toString(), "2"));
            args.addAll(List.of("-chardev", "socket,id=nbd-tcp,path=" + tcp.socket().path(),
                    "-device", "vhost-user-blk-pci,chardev=nbd-tcp,num-queues=1",
                    "-chardev", "socket,id=nbd-tls,path=" + secure.socket().path(),
                    "-device", "vhost-user-blk-pci,chardev=nbd-tls,num-queues=2"));
            QemuGuest guest = QemuGuest.builder().image(GuestImage.prepare()).cpus(2).memoryMib(256).extraArgs(args)
                    .logFile(QemuTests.logFile(getClass())).build();
            resources.add(0, guest);
            guest.start();
            guest.awaitReady(BOOT);
            long booted = System.nanoTime();
            System.out.printf("NbdGuestTest: boot took %d ms%n", (booted - started) / 1_000_000);

            String[] devices = {"vda", "vdb", "vdc"};
            Disk[] disks = {unix, tcp, secure};
            for (int i = 0; i < 3; i++) {
                assertEquals(disks[i].bytes() + "\n", run(guest, "blockdev --getsize64 /dev/" + devices[i]),
                        devices[i] + " is the " + disks[i].name() + " disk");
            }
            for (int i = 0; i < 3; i++) {
                patternRoundTrip(guest, devices[i], disks[i]);
            }
            long patterns = System.nanoTime();
            fileSystemRoundTrip(guest, "vdc");
            long fs = System.nanoTime();
            restartUnderLoad(guest, unix);
            long restart = System.nanoTime();
            assertTrue(unix.backend().queue(0).counters().chains > 0 && unix.backend().queue(1).counters().chains > 0,
                    "both queues of vda carried requests");
            guest.quit(Duration.ofSeconds(60));
            System.out.printf("NbdGuestTest: patterns %d ms, file system %d ms, restart under load %d ms, total %d ms%n",
                    (patterns - booted) / 1_000_000, (fs - patterns) / 1_000_000, (restart - fs) / 1_000_000,
                    (System.nanoTime() - started) / 1_000_000);
        } finally {
            for (AutoCloseable r : resources) {
                try {
                    r.close();
                } catch (Exception e) {
                    System.err.println("closing " + r + ": " + e);
                }
            }
            loop.close();
            try (var files = Files.walk(dir)) {
                files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
            }
        }
    }

    interface ServerStart {
        NbdServer start(Path image) throws Exception;
    }

    interface UriOf {
        String uri(NbdServer server);
    }

    private static Disk disk(Path dir, String name, long bytes, int queues, ControlLoop loop, List<AutoCloseable> resources,
                             ServerStart start, UriOf uri, Path creds) throws Exception {
        Path image = dir.resolve(name + ".img");
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(bytes);
        }
        NbdServer server = start.start(image);
        resources.add(0, server);
        NbdStore store = NbdStore.open(NbdStore.Options.of(NbdUri.parse(uri.uri(server)), creds));
        resources.add(0, store);
        Backend backend = new Backend("nbd-" + name, new BlkDevice(store, queues), BackendOptions.DEFAULT, loop);
        backend.start();
        resources.add(0, backend);
        VhostUserServer socket = VhostUserServer.listen(dir.resolve(name + ".sock"), backend, loop);
        resources.add(0, socket);
        return new Disk(name, image, bytes, server, store, backend, socket);
    }

    private static String[] concat(String[] a, String... b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    /** The seeded pattern at the start, the middle and the end of the disk: in the guest, then in the image. */
    private static void patternRoundTrip(QemuGuest g, String dev, Disk disk) throws Exception {
        long last = disk.bytes() / 512 - CHUNK_SECTORS;
        long[] offsets = {0, last / 2 / CHUNK_SECTORS * CHUNK_SECTORS, last};
        for (long off : offsets) {
            run(g, makeChunk(off) + " && dd if=/tmp/chunk of=/dev/" + dev + " bs=65536 seek=" + off / CHUNK_SECTORS
                    + " count=1 oflag=direct conv=fsync 2>/dev/null");
        }
        for (long off : offsets) {
            run(g, makeChunk(off) + " && dd if=/dev/" + dev + " of=/tmp/back bs=65536 skip=" + off / CHUNK_SECTORS
                    + " count=1 iflag=direct 2>/dev/null && cmp /tmp/chunk /tmp/back");
            assertArrayEquals(expectedChunk(off), fileBytes(disk.image(), off * 512, CHUNK_SECTORS * 512),
                    disk.name() + " image at sector " + off);
        }
    }

    private static void fileSystemRoundTrip(QemuGuest g, String dev) {
        run(g, "mke2fs -q -F /dev/" + dev + " >/dev/null");
        run(g, "mkdir -p /mnt && mount -t ext2 /dev/" + dev + " /mnt");
        String sum = run(g, "head -c 3000000 /dev/urandom > /mnt/data && md5sum < /mnt/data && sync");
        run(g, "umount /mnt && mount -t ext2 /dev/" + dev + " /mnt");
        assertEquals(sum, run(g, "md5sum < /mnt/data"));
        run(g, "fstrim /mnt");
        run(g, "umount /mnt");
    }

    /** DiskRounds writes vda over and over; qemu-nbd dies (SIGKILL) mid-way and comes back 1.5 s later. */
    private static void restartUnderLoad(QemuGuest g, Disk disk) throws Exception {
        run(g, "rm -f /tmp/stop /tmp/finished /tmp/errors /tmp/progress; " + DiskRounds.startCommand(ROUND_BYTES));
        int before = awaitRound(g, 2);
        disk.server().kill();
        Thread.sleep(1500);
        disk.server().start();
        awaitRound(g, before + 3);
        run(g, "touch /tmp/stop");
        String finished = run(g, "i=0; while [ ! -f /tmp/finished ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;"
                + " cat /tmp/finished").strip();
        assertEquals("", run(g, "cat /tmp/errors 2>/dev/null; true"), "the guest saw no I/O error");
        assertTrue(disk.store().reconnects() >= 1, "the store reconnected");
        assertTrue(disk.store().failedOnTimeout() == 0);
        assertArrayEquals(DiskRounds.expected(Integer.parseInt(finished), ROUND_BYTES), fileBytes(disk.image(), 0, ROUND_BYTES),
                "the image holds the last round the guest wrote");
    }

    private static int awaitRound(QemuGuest g, int round) {
        String out = run(g, "i=0; while [ \"$(cat /tmp/progress 2>/dev/null || echo 0)\" -lt " + round
                + " ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; cat /tmp/progress").strip();
        int r = Integer.parseInt(out);
        assertTrue(r >= round, "the guest's writer reached round " + r + ", waited for " + round);
        return r;
    }
}
