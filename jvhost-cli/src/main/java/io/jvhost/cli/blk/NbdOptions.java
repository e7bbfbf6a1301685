package io.jvhost.cli.blk;

import io.jvhost.blk.nbd.NbdException;
import io.jvhost.blk.nbd.NbdStore;
import io.jvhost.blk.nbd.NbdUri;

import java.nio.file.Path;
import java.time.Duration;

import picocli.CommandLine.Option;

/**
 * {@code jvhost blk --nbd URI} and the options of the NBD connection. A bad URI, a refused export,
 * an unreachable server or a TLS failure ends in one line on stderr and no stack trace.
 */
public final class NbdOptions {
    @Option(names = "--tls-dir", paramLabel = "DIR",
            description = "TLS credentials for nbds URIs: ca-cert.pem, client-cert.pem, client-key.pem (QEMU's layout).")
    Path tlsDir;

    @Option(names = "--nbd-timeout", paramLabel = "SECONDS", defaultValue = "30",
            description = "How long the NBD server may be away before the guest sees I/O errors (default ${DEFAULT-VALUE}); the store keeps reconnecting.")
    int timeoutSeconds;

    /** Opens the store, or prints why it cannot on one line and returns null. */
    NbdStore open(String uri, boolean readOnly) {
        if (timeoutSeconds < 0) {
            fail("--nbd-timeout must be 0 or more seconds: " + timeoutSeconds);
            return null;
        }
        Duration timeout = Duration.ofSeconds(timeoutSeconds);
        // The first connection gets at most the outage timeout (and 10 s): an unreachable server is an error, not a hang.
        Duration connect = NbdStore.Options.DEFAULT_CONNECT_TIMEOUT.compareTo(timeout) < 0 || timeout.isZero()
                ? NbdStore.Options.DEFAULT_CONNECT_TIMEOUT : timeout;
        try {
            return NbdStore.open(new NbdStore.Options(NbdUri.parse(uri), tlsDir, timeout, connect, readOnly));
        } catch (NbdException | IllegalArgumentException e) {
            fail(e.getMessage());
            return null;
        }
    }

    private static void fail(String message) {
        System.err.println("jvhost blk: " + message);
    }
}
