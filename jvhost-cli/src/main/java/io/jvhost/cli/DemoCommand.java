package io.jvhost.cli;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.RamStore;
import io.jvhost.cli.rng.RngDevice;
import io.jvhost.net.L2Switch;
import io.jvhost.net.NetDevice;
import io.jvhost.testkit.guest.GuestImage;
import io.jvhost.testkit.guest.QemuGuest;
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
        Path net0Socket = dir.resolve("net0.sock");
        Path net1Socket = dir.resolve("net1.sock");
        L2Switch sw = new L2Switch();
        NetDevice nic0 = new NetDevice(sw.newPort(), 1, 0x525400000001L, NetDevice.DEFAULT_MTU);
        NetDevice nic1 = new NetDevice(sw.newPort(), 1, 0x525400000002L, NetDevice.DEFAULT_MTU);
        step("Preparing the guest (Debian kernel + busybox initramfs, cached)");
        GuestImage image = GuestImage.prepare();
        try (ControlLoop loop = new ControlLoop();
             Backend rng = new Backend("rng", new RngDevice(), BackendOptions.DEFAULT, loop);
             Backend blk = new Backend("blk", new BlkDevice(new RamStore(DISK_BYTES), 2), BackendOptions.DEFAULT, loop);
             Backend net0 = new Backend("net0", nic0, BackendOptions.DEFAULT, loop);
             Backend net1 = new Backend("net1", nic1, BackendOptions.DEFAULT, loop)) {
            rng.start();
            blk.start();
            net0.start();
            net1.start();
            try (VhostUserServer rngServer = VhostUserServer.listen(rngSocket, rng, loop);
                 VhostUserServer blkServer = VhostUserServer.listen(blkSocket, blk, loop);
                 VhostUserServer net0Server = VhostUserServer.listen(net0Socket, net0, loop);
                 VhostUserServer net1Server = VhostUserServer.listen(net1Socket, net1, loop);
                 QemuGuest guest = QemuGuest.builder().image(image).memoryMib(256).cpus(2)
                         .extraArgs("-chardev", "socket,id=rng0,path=" + rngSocket,
                                 "-device", "vhost-user-rng-pci,chardev=rng0",
                                 "-chardev", "socket,id=blk0,path=" + blkSocket,
                                 "-device", "vhost-user-blk-pci,chardev=blk0,num-queues=2",
                                 "-chardev", "socket,id=net0,path=" + net0Socket,
                                 "-netdev", "vhost-user,id=net0,chardev=net0",
                                 // vectors=0: QEMU 7.2 under TCG crashes on vhost-user-net with MSI-X
                                 "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:01,vectors=0")
                         .logFile(dir.resolve("console.log")).build();
                 QemuGuest peer = QemuGuest.builder().image(image).memoryMib(256)
                         .extraArgs("-chardev", "socket,id=net1,path=" + net1Socket,
                                 "-netdev", "vhost-user,id=net1,chardev=net1",
                                 "-device", "virtio-net-pci,netdev=net1,mac=52:54:00:00:00:02,vectors=0")
                         .logFile(dir.resolve("peer-console.log")).build()) {
                step("Booting two QEMU guests (TCG). The first has jvhost devices: vhost-user-rng at " + rngSocket
                        + ", vhost-user-blk (64 MiB RAM disk, 2 queues) at " + blkSocket + ", vhost-user-net at "
                        + net0Socket + "; the second only a NIC, at " + net1Socket + ", on the same jvhost switch");
                guest.start();
                peer.start();
                guest.awaitReady(STEP);
                peer.awaitReady(STEP);
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
                step("Network: both guests' eth0 are ports of one jvhost L2 switch");
                show(guest, "ip link set eth0 up && ip addr add 10.0.0.1/24 dev eth0 && cat /sys/class/net/eth0/address");
                show(peer, "ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0 && cat /sys/class/net/eth0/address");
                show(guest, "ping -c 3 -W 5 10.0.0.2");
                show(peer, "ping -c 3 -W 5 -s 1400 10.0.0.1");
                step("Switch counters");
                System.out.println(nic0.port().describe());
                System.out.println(nic1.port().describe());
                peer.quit(Duration.ofSeconds(20));
                step("The QEMU command line, for your own VM (use your own kernel/disk instead of -kernel/-initrd):");
                System.out.println(guest.commandLine());
                System.out.println();
                System.out.println("with the backends in other terminals:");
                System.out.println("  ./jvhost rng --socket " + rngSocket);
                System.out.println("  ./jvhost blk --socket " + blkSocket + " --ram 64M --queues 2");
                System.out.println("  ./jvhost net --switch --socket " + net0Socket + " --socket " + net1Socket);
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
