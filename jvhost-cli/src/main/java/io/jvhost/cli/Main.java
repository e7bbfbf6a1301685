package io.jvhost.cli;

import io.jvhost.cli.bench.BenchCommand;
import io.jvhost.cli.blk.BlkCommand;
import io.jvhost.cli.net.NetCommand;
import io.jvhost.cli.rng.RngCommand;
import io.jvhost.cli.serve.ServeCommand;

import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ScopeType;

/** {@code jvhost}: serve vhost-user devices, or see them work in a throwaway guest. */
@Command(name = "jvhost", mixinStandardHelpOptions = true, version = "jvhost 0.1.0",
        description = {"vhost-user device backends on the JVM.", "",
            "Devices:",
            "  blk    virtio-blk: a disk on an image file, a block device or RAM",
            "  net    virtio-net: NICs on an in-process switch, or bench ports (drop, reflect, generate)",
            "  rng    virtio-rng: entropy for the guest's /dev/hwrng", "",
            "Also:",
            "  serve  every device of a YAML config in one process (--config FILE, --check, --control PATH)",
            "  bench  benchmarks against DPDK and qemu-storage-daemon (bench net, bench blk), and JMH (bench jmh)",
            "  demo   boot a throwaway QEMU guest on jvhost devices and show them working",
            "  test   (launcher) run the whole test suite", "",
            "Run 'jvhost <command> --help' for its options."},
        subcommands = {BlkCommand.class, NetCommand.class, RngCommand.class, ServeCommand.class, BenchCommand.class, DemoCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @Option(names = "--debug", scope = ScopeType.INHERIT,
            description = "On an error, print the Java stack trace after its one-line message.")
    void debug(boolean on) {
        Errors.debug(on);
    }

    /** The CLI as {@link #main} runs it: every error one line on stderr (exit code 2 for usage, 1 otherwise). */
    public static CommandLine commandLine() {
        return Errors.install(new CommandLine(new Main()));
    }

    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }

    public static void main(String[] args) {
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "info");
        }
        System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");
        System.setProperty("org.slf4j.simpleLogger.dateTimeFormat", "HH:mm:ss.SSS");
        for (String a : args) {
            if (a.equals("--debug")) {
                Errors.debug(true); // also for an error met while parsing, before picocli reaches it
            }
        }
        int code = commandLine().execute(args);
        if (!ServeOptions.keepsRunning()) { // a serving command returns only once shutdown is under way
            System.exit(code);
        }
    }
}
