package io.jvhost.cli.blk;

import io.jvhost.blk.BlkDevice;
import io.jvhost.blk.BlockStore;
import io.jvhost.blk.FileStore;
import io.jvhost.blk.NullStore;
import io.jvhost.blk.RamStore;
import io.jvhost.cli.DeviceCommand;
import io.jvhost.cli.DeviceSet;
import io.jvhost.cli.Failure;
import io.jvhost.cli.options.DiskSizeConverter;

import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;

import java.nio.file.Files;
import java.nio.file.Path;

import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code jvhost blk}: a vhost-user-blk disk on a file, a block device, RAM, a Ceph RBD image or an
 * NBD export, or a null disk for measuring the framework alone.
 */
@Command(name = "blk", mixinStandardHelpOptions = true,
        description = {"Serve virtio-blk over vhost-user, from an image file, a block device, RAM, a Ceph RBD image or an NBD server",
            "(or a null disk, for benchmarks).", "",
            "QEMU: -chardev socket,id=blk0,path=PATH -device vhost-user-blk-pci,chardev=blk0,num-queues=N",
            DeviceCommand.SHARED_MEMORY})
public final class BlkCommand extends DeviceCommand {
    static final class Backing {
        @Option(names = "--file", paramLabel = "IMAGE", description = "Raw image file or block device.")
        Path file;

        @Option(names = "--ram", paramLabel = "SIZE", converter = DiskSizeConverter.class,
                description = {"A RAM disk of SIZE bytes (suffixes K, M, G, T; a multiple of 512). Memory is taken as the",
                    "disk is written and given back on discard; pages never written read as zeroes."})
        Long ram;

        @Option(names = "--null", paramLabel = "SIZE", converter = DiskSizeConverter.class,
                description = {"A null disk of SIZE bytes, for benchmarks: reads leave the guest's buffer as it was, writes",
                    "are discarded, flush and discard succeed (qemu-storage-daemon's null-co, SPDK's null bdev)."})
        Long nullSize;

        @Option(names = "--rbd", paramLabel = "POOL/IMAGE", description = "A Ceph RBD image, through librbd (package librbd1).")
        String rbd;

        @Option(names = "--nbd", paramLabel = "URI", description = {"An NBD export: nbd://HOST[:PORT]/EXPORT,",
            "nbd+unix:///EXPORT?socket=PATH, or nbds://... / nbds+unix://... over TLS (with --tls-dir)."})
        String nbd;
    }

    @ArgGroup(exclusive = true, multiplicity = "1")
    Backing backing;

    @Mixin
    RbdOptions ceph;

    @Mixin
    NbdOptions nbd;

    @Option(names = "--read-only", description = "Refuse writes (the guest sees a read-only disk).")
    boolean readOnly;

    @Option(names = "--queues", defaultValue = "1", description = "Request queues, one per guest vCPU (default ${DEFAULT-VALUE}).")
    int queues;

    @Option(names = "--direct", description = "Open the image with O_DIRECT, bypassing the host page cache.")
    boolean direct;

    @Option(names = "--io-workers", defaultValue = "2",
            description = "Threads doing blocking file I/O on the threads engine (default ${DEFAULT-VALUE}).")
    int ioWorkers;

    @Option(names = "--io-engine", paramLabel = "ENGINE", converter = IoEngineConverter.class,
            description = {"File I/O: uring (io_uring, a ring per queue reaped by its poller), inline (each poller reads and",
                "writes itself: for files in memory), threads (--io-workers threads), or auto (default: inline for a file",
                "on tmpfs without non-blocking I/O, else uring unless the kernel forbids it; also -Djvhost.io-engine)."})
    FileStore.IoEngine ioEngine;

    /** Parses --io-engine. */
    static final class IoEngineConverter implements picocli.CommandLine.ITypeConverter<FileStore.IoEngine> {
        @Override
        public FileStore.IoEngine convert(String value) {
            try {
                return FileStore.IoEngine.parse(value);
            } catch (IllegalArgumentException e) {
                throw new picocli.CommandLine.TypeConversionException(e.getMessage());
            }
        }
    }

    @Override
    public void check() {
        checkOneSocket();
        checkRange("--queues", queues, 1, MAX_QUEUES, "one per guest vCPU");
        checkRange("--io-workers", ioWorkers, 1, 1024, "threads doing file I/O");
        if (backing.rbd != null) {
            ceph.check(backing.rbd);
        }
        if (backing.nbd != null) {
            nbd.check();
        }
    }

    @Override
    public DeviceSet open(Shared shared) throws Exception {
        BlockStore store = backing.rbd != null ? ceph.open(backing.rbd, readOnly)
                : backing.nbd != null ? nbd.open(backing.nbd, readOnly)
                : backing.file != null ? openFile(backing.file)
                : backing.ram != null ? ram()
                : new NullStore(backing.nullSize, readOnly);
        BlkDevice device;
        try {
            device = new BlkDevice(store, queues);
        } catch (IllegalArgumentException e) {
            store.close();
            throw usage(e.getMessage());
        }
        if (store instanceof RamStore ram) { // a successor keeps the disk's contents
            handoverFds = () -> java.util.Map.of(ramKey(), java.util.List.of(ram.duplicateFd()));
        }
        // A grown image file (qemu-img resize, truncate) reaches the guest within a second.
        // Closing a file store flushes it.
        return new DeviceSet(java.util.List.of(device), store, () -> { }, device::checkResize);
    }

    /** Whose RAM disk a handed-over memory fd is: the socket's, as one process may serve several. */
    private String ramKey() {
        return "ram:" + serve.sockets().get(0).toAbsolutePath();
    }

    /** A RAM disk: the running process's (live upgrade), or a new one. */
    private RamStore ram() {
        java.util.List<io.jvhost.core.sys.Fd> inherited = predecessor == null ? java.util.List.of() : predecessor.deviceFds(ramKey());
        try {
            return inherited.isEmpty() ? new RamStore(backing.ram, readOnly) : new RamStore(inherited.get(0), backing.ram, readOnly);
        } catch (IllegalArgumentException | IllegalStateException e) {
            throw new Failure("--ram " + backing.ram + ": " + e.getMessage(), e);
        }
    }

    /** Opens the image, or says in one line what is wrong with it and what to do. */
    private FileStore openFile(Path file) {
        if (!Files.exists(file)) {
            throw new Failure("--file " + file + ": no such file (create an image: truncate -s 10G " + file
                    + ", or qemu-img create -f raw " + file + " 10G)");
        }
        if (Files.isDirectory(file)) {
            throw new Failure("--file " + file + " is a directory; give a raw image file or a block device");
        }
        try {
            return new FileStore(file, readOnly, direct, ioWorkers,
                    ioEngine != null ? ioEngine : FileStore.IoEngine.configured());
        } catch (NativeException e) {
            throw new Failure("--file " + file + ": " + switch (e.errno()) {
                case LibC.EPERM, 13 -> "permission denied (jvhost needs to read" + (readOnly ? "" : " and write") + " it"
                        + (readOnly ? "" : "; or add --read-only") + ")";
                case 30 -> "on a read-only file system (add --read-only)";
                case LibC.EINVAL -> direct ? "its file system does not support O_DIRECT (leave out --direct)" : e.getMessage();
                case 26 -> "busy: it is being executed, or a block device in exclusive use";
                default -> e.getMessage();
            }, e);
        }
    }
}
