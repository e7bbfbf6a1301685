package io.jvhost.cli;

import java.util.concurrent.Callable;

import picocli.CommandLine.Mixin;

/** A device command ({@code blk}, {@code net}, {@code rng}): the options every device takes, and the code that serves it. */
public abstract class DeviceCommand implements Callable<Integer> {
    /** The help line saying that QEMU must share guest memory with a vhost-user backend. */
    public static final String SHARED_MEMORY =
            "      (guest memory must be shared: -object memory-backend-memfd,id=mem,size=...,share=on -numa node,memdev=mem)";

    @Mixin
    protected ServeOptions serve;
}
