package io.jvhost.cli;

import java.util.concurrent.Callable;

import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** A device command ({@code blk}, {@code net}, {@code rng}): the options every device takes, and the code that serves it. */
public abstract class DeviceCommand implements Callable<Integer> {
    /** The help line saying that QEMU must share guest memory with a vhost-user backend. */
    public static final String SHARED_MEMORY =
            "      (guest memory must be shared: -object memory-backend-memfd,id=mem,size=...,share=on -numa node,memdev=mem)";

    /** The most queues (blk) or queue pairs (net) a device takes. */
    public static final int MAX_QUEUES = 64;

    @Mixin
    protected ServeOptions serve;

    @Spec
    protected CommandSpec spec;

    /** A usage error of this command (one line with a pointer to its --help, exit code 2). */
    protected ParameterException usage(String message) {
        return new ParameterException(spec.commandLine(), message);
    }

    /** Refuses {@code value} of {@code option} unless it is within {@code [min, max]}. */
    protected void checkRange(String option, int value, int min, int max, String hint) {
        if (value < min || value > max) {
            throw usage(option + " must be " + min + ".." + max + (hint.isEmpty() ? "" : " (" + hint + ")") + ", got " + value);
        }
    }
}
