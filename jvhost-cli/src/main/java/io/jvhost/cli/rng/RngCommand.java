package io.jvhost.cli.rng;

import io.jvhost.cli.DeviceCommand;

import picocli.CommandLine.Command;

/** {@code jvhost rng}: a vhost-user-rng device. */
@Command(name = "rng", mixinStandardHelpOptions = true,
        description = {"Serve virtio-rng (entropy from SecureRandom) over vhost-user.", "",
            "QEMU: -chardev socket,id=rng0,path=PATH -device vhost-user-rng-pci,chardev=rng0",
            DeviceCommand.SHARED_MEMORY})
public final class RngCommand extends DeviceCommand {
    @Override
    public Integer call() throws Exception {
        return serve.serve("rng", new RngDevice());
    }
}
