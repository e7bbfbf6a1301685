package io.jvhost.cli.blk;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.BlockStore;
import io.jvhost.blk.FileStore;
import io.jvhost.blk.RamStore;
import io.jvhost.blk.nbd.NbdException;
import io.jvhost.blk.nbd.NbdStore;
import io.jvhost.blk.nbd.NbdUri;
import io.jvhost.cli.ServeOptions;

import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.Callable;

import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code jvhost blk}: a vhost-user-blk disk on a file, a block device, RAM or an NBD export. */
@Command(name = "blk", mixinStandardHelpOptions = true,
        description = {"Serve virtio-blk over vhost-user, from an image file, a block device, RAM or an NBD server.", "",
            "QEMU: -chardev socket,id=blk0,path=PATH -device vhost-user-blk-pci,chardev=blk0,num-queues=N",
            "      (guest memory must be shared: -object memory-backend-memfd,id=mem,size=...,share=on -numa node,memdev=mem)"})
public final class BlkCommand implements Callable<Integer> {
    @Mixin
    ServeOptions serve;

    @ArgGroup(exclusive = true, multiplicity = "1")
    Backing backing;

    static final class Backing {
        @Option(names = "--file", paramLabel = "IMAGE", description = "Raw image file or block device.")
        Path file;

        @Option(names = "--ram", paramLabel = "SIZE", description = "A RAM disk of SIZE bytes (suffixes K, M, G).")
        String ram;

        @Option(names = "--nbd", paramLabel = "URI", description = {"An NBD export: nbd://HOST[:PORT]/EXPORT,",
            "nbd+unix:///EXPORT?socket=PATH, or nbds://... / nbds+unix://... over TLS (with --tls-dir)."})
        String nbd;
    }

    @Option(names = "--tls-dir", paramLabel = "DIR",
            description = "TLS credentials for nbds URIs: ca-cert.pem, client-cert.pem, client-key.pem (QEMU's layout).")
    Path tlsDir;

    @Option(names = "--nbd-timeout", paramLabel = "SECONDS", defaultValue = "30",
            description = "How long the NBD server may be away before the guest sees I/O errors (default ${DEFAULT-VALUE}); the store keeps reconnecting.")
    int nbdTimeout;

    @Spec
    CommandSpec spec;

    @Option(names = "--read-only", description = "Refuse writes (the guest sees a read-only disk).")
    boolean readOnly;

    @Option(names = "--queues", defaultValue = "1", description = "Request queues, one per guest vCPU (default ${DEFAULT-VALUE}).")
    int queues;

    @Option(names = "--direct", description = "Open the image with O_DIRECT, bypassing the host page cache.")
    boolean direct;

    @Option(names = "--io-workers", defaultValue = "2", description = "Threads doing blocking file I/O (default ${DEFAULT-VALUE}).")
    int ioWorkers;

    @Override
    public Integer call() throws Exception {
        BlockStore store;
        if (backing.nbd != null) {
            try {
                store = openNbd();
            } catch (NbdException | IllegalArgumentException e) {
                spec.commandLine().getErr().println("jvhost blk: " + e.getMessage()); // one line, no trace
                return 1;
            }
        } else {
            store = backing.file != null ? new FileStore(backing.file, readOnly, direct, ioWorkers)
                    : new RamStore(parseSize(backing.ram), readOnly);
        }
        BlkDevice device = new BlkDevice(store, queues);
        // A grown image file (qemu-img resize, truncate) reaches the guest within a second.
        Thread.ofPlatform().daemon(true).name("blk-resize-watch").start(() -> {
            while (true) {
                try {
                    Thread.sleep(1000);
                } catch (InterruptedException e) {
                    return;
                }
                device.checkResize();
            }
        });
        return serve.serve("blk", device, store); // closing a file store flushes it
    }

    private NbdStore openNbd() throws NbdException {
        if (nbdTimeout < 0) {
            throw new IllegalArgumentException("--nbd-timeout must be 0 or more seconds: " + nbdTimeout);
        }
        Duration timeout = Duration.ofSeconds(nbdTimeout);
        // The first connection gets at most the outage timeout (and 10 s): an unreachable server is an error, not a hang.
        Duration connect = NbdStore.Options.DEFAULT_CONNECT_TIMEOUT.compareTo(timeout) < 0 || timeout.isZero()
                ? NbdStore.Options.DEFAULT_CONNECT_TIMEOUT : timeout;
        return NbdStore.open(new NbdStore.Options(NbdUri.parse(backing.nbd), tlsDir, timeout, connect, readOnly));
    }

    /** Parses 64M, 1G, 4096 ... into bytes. */
    static long parseSize(String s) {
        String t = s.trim().toUpperCase();
        long unit = switch (t.isEmpty() ? ' ' : t.charAt(t.length() - 1)) {
            case 'K' -> 1L << 10;
            case 'M' -> 1L << 20;
            case 'G' -> 1L << 30;
            default -> 1;
        };
        return Long.parseLong(unit == 1 ? t : t.substring(0, t.length() - 1)) * unit;
    }
}
