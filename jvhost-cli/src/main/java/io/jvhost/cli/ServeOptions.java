package io.jvhost.cli;

import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.runtime.IdleMode;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.Endpoint;
import io.jvhost.core.transport.VhostUserClient;
import io.jvhost.core.transport.VhostUserServer;

import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

import picocli.CommandLine.Option;

/** Options every device command shares, and the code that serves a device until a signal. */
public final class ServeOptions {
    private static volatile boolean serving;

    @Option(names = "--socket", required = true, paramLabel = "PATH",
            description = "vhost-user Unix socket: created and listened on, or (with --client) connected to.")
    Path socket;

    @Option(names = "--client", description = "Connect to a frontend that listens (QEMU server=on) and reconnect when it goes away.")
    boolean client;

    @Option(names = "--busy-poll", description = "Spin on the rings instead of sleeping on kicks (lowest latency, a core per poller).")
    boolean busyPoll;

    @Option(names = "--queue-map", paramLabel = "MAP",
            description = "Queues per poller thread, e.g. 0,1:2,3 (colon between pollers). Default: the device's choice.")
    String queueMap;

    @Option(names = "--trace", description = "Log every vhost-user message, decoded.")
    void trace(boolean on) {
        if (on) {
            System.setProperty("org.slf4j.simpleLogger.log.io.jvhost.core.protocol", "debug");
        }
    }

    static boolean keepsRunning() {
        return serving;
    }

    /** Serves {@code device} until SIGTERM or SIGINT; returns the exit code. */
    public int serve(String name, VirtioDevice device) throws Exception {
        BackendOptions options = new BackendOptions(busyPoll ? IdleMode.BUSY : IdleMode.EVENT,
                queueMap == null ? null : BackendOptions.parseQueueSets(queueMap));
        ControlLoop loop = new ControlLoop();
        Backend backend = new Backend(name, device, options, loop);
        backend.start();
        Endpoint endpoint = client ? VhostUserClient.connect(socket, backend, loop)
                : VhostUserServer.listen(socket, backend, loop);
        System.out.printf("jvhost %s: %s %s (%s pollers, %s mode). Ctrl-C stops.%n", name,
                client ? "connecting to" : "listening on", socket, backend.pollerCount(), options.idleMode());
        CountDownLatch stopped = new CountDownLatch(1);
        serving = true;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            endpoint.close();
            backend.close();
            loop.close();
            stopped.countDown();
        }, "jvhost-shutdown"));
        stopped.await();
        return 0;
    }
}
