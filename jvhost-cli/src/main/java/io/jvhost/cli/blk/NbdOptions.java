package io.jvhost.cli.blk;

import io.jvhost.blk.nbd.NbdException;
import io.jvhost.blk.nbd.NbdStore;
import io.jvhost.blk.nbd.NbdUri;
import io.jvhost.cli.Failure;

import java.nio.file.Path;
import java.time.Duration;

import picocli.CommandLine.Option;

/**
 * {@code jvhost blk --nbd URI} and the options of the NBD connection. A bad URI, a refused export,
 * an unreachable server or a TLS failure is a {@link Failure}: one line on stderr and no stack trace.
 */
public final class NbdOptions {
    @Option(names = "--tls-dir", paramLabel = "DIR",
            description = "TLS credentials for nbds URIs: ca-cert.pem, client-cert.pem, client-key.pem (QEMU's layout).")
    Path tlsDir;

    @Option(names = "--nbd-timeout", paramLabel = "SECONDS", defaultValue = "30",
            description = "How long the NBD server may be away before the guest sees I/O errors (default ${DEFAULT-VALUE}); the store keeps reconnecting.")
    int timeoutSeconds;

    /** Refuses a timeout no connection can have. */
    void check() {
        if (timeoutSeconds < 0) {
            throw new Failure("--nbd-timeout must be 0 or more seconds: " + timeoutSeconds);
        }
    }

    /** Opens the store, or throws a {@link Failure} saying in one line why it cannot. */
    NbdStore open(String uri, boolean readOnly) {
        check();
        Duration timeout = Duration.ofSeconds(timeoutSeconds);
        // The first connection gets at most the outage timeout (and 10 s): an unreachable server is an error, not a hang.
        Duration connect = NbdStore.Options.DEFAULT_CONNECT_TIMEOUT.compareTo(timeout) < 0 || timeout.isZero()
                ? NbdStore.Options.DEFAULT_CONNECT_TIMEOUT : timeout;
        try {
            return NbdStore.open(new NbdStore.Options(NbdUri.parse(uri), tlsDir, timeout, connect, readOnly));
        } catch (NbdException | IllegalArgumentException e) {
            throw new Failure(e.getMessage(), e);
        }
    }
}
