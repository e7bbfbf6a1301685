package io.jvhost.cli;

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

    @Override
    public Integer call() throws Exception {
        List<String> missing = GuestImage.missingHostPackages();
        if (!missing.isEmpty()) {
            System.err.println("The demo boots a QEMU guest and needs: apt-get install " + String.join(" ", missing));
            return 2;
        }
        Path dir = Files.createTempDirectory("jvhost-demo");
        Path rngSocket = dir.resolve("rng.sock");
        step("Preparing the guest (Debian kernel + busybox initramfs, cached)");
        GuestImage image = GuestImage.prepare();
        try (ControlLoop loop = new ControlLoop();
             Backend rng = new Backend("rng", new RngDevice(), BackendOptions.DEFAULT, loop)) {
            rng.start();
            try (VhostUserServer server = VhostUserServer.listen(rngSocket, rng, loop);
                 QemuGuest guest = QemuGuest.builder().image(image).memoryMib(256)
                         .extraArgs("-chardev", "socket,id=rng0,path=" + rngSocket,
                                 "-device", "vhost-user-rng-pci,chardev=rng0")
                         .logFile(dir.resolve("console.log")).build()) {
                step("Booting QEMU (TCG) with a vhost-user-rng device served by jvhost at " + rngSocket);
                guest.start();
                guest.awaitReady(STEP);
                show(guest, "cat /sys/class/misc/hw_random/rng_available /sys/class/misc/hw_random/rng_current");
                show(guest, "head -c 65536 /dev/hwrng | wc -c");
                show(guest, "head -c 64 /dev/hwrng | hexdump -C");
                var q = rng.queue(0).counters();
                step("jvhost served " + q.chains + " entropy requests, " + q.bytesWritten + " bytes, "
                        + q.notificationsSent + " interrupts, " + q.chainsRejected() + " refused");
                step("The QEMU command line, for your own VM (use your own kernel/disk instead of -kernel/-initrd):");
                System.out.println(guest.commandLine());
                System.out.println();
                System.out.println("and in another terminal:  ./jvhost rng --socket " + rngSocket);
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
