package io.jvhost.cli;

import io.jvhost.net.L2Switch;

import java.util.concurrent.Callable;

import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/**
 * A device command ({@code blk}, {@code net}, {@code rng}): the options every device takes, the
 * checks of its own options, and the code that opens its devices. {@code jvhost blk ...} and a
 * {@code type: blk} device of {@code jvhost serve --config} both go through {@link #check()} and
 * {@link #open}: an option is parsed, converted and checked in one place.
 */
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

    /** With --handover, the process that serves these sockets now (its device fds are offered here), or null. */
    protected io.jvhost.core.transport.HandoverTakeover predecessor;

    /** What {@link #open} gives a successor of this process besides the sockets (a TAP's queues). */
    protected io.jvhost.core.transport.Handover.DeviceFds handoverFds = io.jvhost.core.transport.Handover.DeviceFds.NONE;

    /** What the devices of one command or config entry share with others in the process. */
    @FunctionalInterface
    public interface Shared {
        /** The in-process switch that {@code --switch} NICs join. */
        L2Switch l2Switch();

        /** A switch of its own, made when first asked for: what {@code jvhost net --switch} gets. */
        static Shared own() {
            L2Switch[] made = new L2Switch[1];
            return () -> made[0] != null ? made[0] : (made[0] = new L2Switch());
        }
    }

    /**
     * Refuses option values no device can have (usage errors), touching nothing on the machine:
     * what {@code serve --check} runs for each device. Any thread.
     */
    public void check() {
    }

    /**
     * Opens what the options name (an image, a TAP, a store connection) and makes the devices, one
     * per socket; throws a {@link Failure} for the machine's reasons, a usage error for the options'.
     */
    public abstract DeviceSet open(Shared shared) throws Exception;

    /** Takes the TAP and RAM disk fds that {@link #open} finds from {@code predecessor} (live upgrade), or none when null. */
    public void inherit(io.jvhost.core.transport.HandoverTakeover predecessor) {
        this.predecessor = predecessor;
    }

    /** What a successor of this process needs of the devices {@link #open} made, besides the sockets. */
    public io.jvhost.core.transport.Handover.DeviceFds handoverFds() {
        return handoverFds;
    }

    /** The options every device has (sockets, pollers, access). */
    public ServeOptions serveOptions() {
        return serve;
    }

    /** {@code blk}, {@code net} or {@code rng}. */
    public String kind() {
        return spec.name();
    }

    @Override
    public Integer call() throws Exception {
        check();
        serve.checkUsage();
        predecessor = serve.contactPredecessor();
        DeviceSet set;
        try {
            set = open(Shared.own());
        } catch (Exception | Error e) {
            if (predecessor != null) {
                predecessor.close();
            }
            throw e;
        }
        return serve.serve(kind(), set, predecessor, handoverFds);
    }

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

    /** Refuses more than one {@code --socket} for a device that serves one. */
    protected void checkOneSocket() {
        if (serve.socketCount() != 1) {
            throw usage(kind() + " serves one socket; got " + serve.socketCount());
        }
    }
}
