package io.jvhost.cli.serve;

import io.jvhost.cli.Errors;
import io.jvhost.cli.Failure;
import io.jvhost.cli.ServeOptions;
import io.jvhost.cli.SystemdNotify;
import io.jvhost.prometheus.MetricsServer;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code jvhost serve --config FILE}: every device of a YAML config in one process, on one control
 * thread, each stopped alone if it faults; optionally a control socket to add and remove devices
 * while it runs.
 */
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = {"Serve the devices of a YAML config (blk, net and rng, any number) in one process.", "",
            "A device's keys are its command's options without --, plus type (blk, net or rng), name, poller: NAME"
                + " (a thread of the pollers section) and, for net, switch: true (the shared switch) or switch: NAME.", "",
            "The top level has devices, pollers ({NAME: {idle: MODE, cpu: N}}), metrics (HOST:PORT), latency, trace,"
                + " control (PATH), handover (PATH), and socket-mode, socket-group and allow-uid as defaults for every device.", "",
            "See qemu-configs/serve.yaml and the README."})
public final class ServeCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--config", required = true, paramLabel = "FILE", description = "The YAML config.")
    Path config;

    @Option(names = "--check", description = "Check the config and print each problem with its line and column; serve nothing (exit 2 if any).")
    boolean check;

    @Option(names = "--control", paramLabel = "PATH",
            description = "Control socket (mode 0600): list, add, remove and stats commands, a JSON line each (overrides the config's control).")
    Path control;

    @Option(names = "--handover", paramLabel = "PATH",
            description = "Live upgrade (overrides the config's handover): listen on PATH for a successor; run the same command again and the new"
                    + " process takes over every device without the guests or QEMU noticing, and this one exits 0.")
    Path handover;

    @Override
    public Integer call() throws Exception {
        String text;
        try {
            text = Files.readString(config, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new Failure("--config " + config + ": no such file");
        } catch (IOException e) {
            throw new Failure("--config " + config + ": " + e.getMessage(), e);
        }
        ServeConfig c = ServeConfig.read(text);
        if (!c.problems.isEmpty()) {
            for (ServeConfig.Problem p : c.problems) {
                spec.commandLine().getErr().println("jvhost serve: " + p.format(config.toString()));
            }
            spec.commandLine().getErr().flush();
            return 2;
        }
        if (check) {
            spec.commandLine().getOut().println(config + ": " + c.devices.size() + " device" + (c.devices.size() == 1 ? "" : "s")
                    + " (" + String.join(", ", c.devices.stream().map(d -> d.name() + " " + d.type()).toList()) + "), no problems");
            return 0;
        }
        return serve(c);
    }

    private int serve(ServeConfig c) throws Exception {
        if (c.trace) {
            System.setProperty("org.slf4j.simpleLogger.log.io.jvhost.core.protocol", "debug");
        }
        Path handoverPath = handover != null ? handover : c.handover;
        io.jvhost.core.transport.HandoverTakeover predecessor = handoverPath == null ? null
                : ServeOptions.contactPredecessor(spec, handoverPath, c.devices.stream().flatMap(d -> d.command().serveOptions().sockets().stream()).toList());
        DeviceHost host = new DeviceHost(c.latency, c.pollers.values());
        if (handoverPath != null) {
            host.handsOver();
        }
        java.util.List<AutoCloseable> resources = new java.util.ArrayList<>();
        int started = 0;
        for (ServeConfig.DeviceSpec d : c.devices) {
            try {
                host.add(d, true, predecessor);
                started++;
            } catch (Exception e) {
                System.err.println("jvhost serve: device " + d.name() + ": " + Errors.describe(e)
                        + " (it is listed as failed; the other devices start)");
            }
        }
        if (started == 0) {
            if (predecessor != null) {
                predecessor.close();
            }
            host.close();
            throw new Failure("no device of " + config + " could start");
        }
        try {
            if (handoverPath != null) {
                resources.add(0, host.offer(handoverPath, predecessor));
            }
            if (c.metrics != null) {
                MetricsServer server = MetricsServer.start(c.metrics, host.registry());
                resources.add(0, server);
                System.out.printf("jvhost metrics: %s%n", server.url());
            }
            Path controlPath = control != null ? control : c.control;
            if (controlPath != null) {
                resources.add(0, ControlSocket.open(controlPath, host, c.defaults));
                System.out.printf("jvhost control: %s%n", controlPath);
            }
        } catch (Exception e) {
            closeAll(resources);
            host.close();
            throw e;
        }
        CountDownLatch stop = ServeOptions.onSignals();
        SystemdNotify.ready(started + " of " + c.devices.size() + " devices serving");
        stop.await();
        SystemdNotify.stopping();
        closeAll(resources);
        host.close();
        System.exit(0);
        return 0;
    }

    private static void closeAll(java.util.List<AutoCloseable> resources) {
        for (AutoCloseable r : resources) {
            try {
                r.close();
            } catch (Exception e) {
                System.err.println("closing " + r + ": " + Errors.describe(e));
            }
        }
    }
}
