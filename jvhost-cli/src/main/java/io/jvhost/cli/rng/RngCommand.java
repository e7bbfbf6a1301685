package io.jvhost.cli.rng;

import io.jvhost.cli.DeviceCommand;
import io.jvhost.cli.DeviceSet;

import picocli.CommandLine.Command;

/** {@code jvhost rng}: a vhost-user-rng device. */
@Command(name = "rng", mixinStandardHelpOptions = true,
        description = {"Serve virtio-rng (entropy from SecureRandom) over vhost-user.", "",
            "QEMU: -chardev socket,id=rng0,path=PATH -device vhost-user-rng-pci,chardev=rng0",
            DeviceCommand.SHARED_MEMORY})
public final class RngCommand extends DeviceCommand {
    @Override
    public void check() {
        checkOneSocket();
    }

    @Override
    public DeviceSet open(Shared shared) {
        return DeviceSet.of(new RngDevice());
    }
}
