package io.jvhost.cli;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.RamStore;
import io.jvhost.cli.rng.RngDevice;
import io.jvhost.core.guest.GuestImage;
import io.jvhost.core.guest.QemuGuest;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;

import picocli.CommandLine.Command;

/**
 * {@code jvhost demo}: starts jvhost backends in this process, boots a throwaway QEMU guest (TCG)
 * attached to them, shows the guest using each device, and prints the QEMU command line.
 */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = "Boot a throwaway QEMU guest attached to jvhost devices and show them working.")
public final class DemoCommand implements Callable<Integer> {
    private static final Duration STEP = Duration.ofSeconds(60);
    private static final long DISK_BYTES = 64L << 20;

    @Override
    public Integer call() throws Exception {
        List<String> missing = GuestImage.missingHostPackages();
        if (!missing.isEmpty()) {
            System.err.println("The demo boots a QEMU guest and needs: apt-get install " + String.join(" ", missing));
            return 2;
        }
        Path dir = Files.createTempDirectory("jvhost-demo");
        Path rngSocket = dir.resolve("rng.sock");
        Path blkSocket = dir.resolve("blk.sock");
        step("Preparing the guest (Debian kernel + busybox initramfs, cached)");
        GuestImage image = GuestImage.prepare();
        try (ControlLoop loop = new ControlLoop();
             Backend rng = new Backend("rng", new RngDevice(), BackendOptions.DEFAULT, loop);
             Backend blk = new Backend("blk", new BlkDevice(new RamStore(DISK_BYTES), 2), BackendOptions.DEFAULT, loop)) {
            rng.start();
            blk.start();
            try (VhostUserServer rngServer = VhostUserServer.listen(rngSocket, rng, loop);
                 VhostUserServer blkServer = VhostUserServer.listen(blkSocket, blk, loop);
                 QemuGuest guest = QemuGuest.builder().image(image).memoryMib(256).cpus(2)
                         .extraArgs("-chardev", "socket,id=rng0,path=" + rngSocket,
                                 "-device", "vhost-user-rng-pci,chardev=rng0",
                                 "-chardev", "socket,id=blk0,path=" + blkSocket,
                                 "-device", "vhost-user-blk-pci,chardev=blk0,num-queues=2")
                         .logFile(dir.resolve("console.log")).build()) {
                step("Booting QEMU (TCG) with jvhost devices: vhost-user-rng at " + rngSocket
                        + ", vhost-user-blk (64 MiB RAM disk, 2 queues) at " + blkSocket);
                guest.start();
                guest.awaitReady(STEP);
                step("Entropy: the guest's /dev/hwrng is jvhost's rng device");
                show(guest, "cat /sys/class/misc/hw_random/rng_available /sys/class/misc/hw_random/rng_current");
                show(guest, "head -c 65536 /dev/hwrng | wc -c");
                show(guest, "head -c 64 /dev/hwrng | hexdump -C");
                var q = rng.queue(0).counters();
                step("jvhost rng served " + q.chains + " entropy requests, " + q.bytesWritten + " bytes, "
                        + q.notificationsSent + " interrupts, " + q.chainsRejected() + " refused");
                step("Disk: the guest's /dev/vda is jvhost's blk device");
                show(guest, "cat /sys/block/vda/size /sys/block/vda/queue/logical_block_size; ls /sys/block/vda/mq");
                show(guest, "mke2fs -q /dev/vda >/dev/null && mkdir -p /mnt && mount -t ext2 /dev/vda /mnt && df -h /mnt");
                show(guest, "head -c 4000000 /dev/urandom > /mnt/file && md5sum /mnt/file && sync");
                show(guest, "umount /mnt && mount -t ext2 /dev/vda /mnt && md5sum /mnt/file && fstrim -v /mnt && umount /mnt");
                for (int i = 0; i < 2; i++) {
                    var b = blk.queue(i).counters();
                    step("jvhost blk queue " + i + ": " + b.chains + " requests, " + b.bytesWritten + " bytes to the guest, "
                            + b.notificationsSent + " interrupts, " + b.chainsRejected() + " refused");
                }
                step("The QEMU command line, for your own VM (use your own kernel/disk instead of -kernel/-initrd):");
                System.out.println(guest.commandLine());
                System.out.println();
                System.out.println("and in other terminals:  ./jvhost rng --socket " + rngSocket
                        + "   and   ./jvhost blk --socket " + blkSocket + " --ram 64M --queues 2");
                guest.quit(Duration.ofSeconds(20));
            }
        }
        step("Demo finished.");
        return 0;
    }

    private static void step(String text) {
        System.out.println();
        System.out.println("==> " + text);
    }

    private static void show(QemuGuest guest, String command) {
        System.out.println("guest# " + command);
        QemuGuest.Result r = guest.exec(command, STEP);
        System.out.print(r.output().endsWith("\n") || r.output().isEmpty() ? r.output() : r.output() + "\n");
        if (!r.succeeded()) {
            throw new IllegalStateException("guest command failed with status " + r.exitStatus() + ": " + command);
        }
    }
}
