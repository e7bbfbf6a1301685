package io.jvhost.cli.rng;

import io.jvhost.cli.ServeOptions;

import java.util.concurrent.Callable;

import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

/** {@code jvhost rng}: a vhost-user-rng device. */
@Command(name = "rng", mixinStandardHelpOptions = true,
        description = {"Serve virtio-rng (entropy from SecureRandom) over vhost-user.", "",
            "QEMU: -chardev socket,id=rng0,path=PATH -device vhost-user-rng-pci,chardev=rng0",
            "      (guest memory must be shared: -object memory-backend-memfd,id=mem,size=...,share=on -numa node,memdev=mem)"})
public final class RngCommand implements Callable<Integer> {
    @Mixin
    ServeOptions serve;

    @Override
    public Integer call() throws Exception {
        return serve.serve("rng", new RngDevice());
    }
}
