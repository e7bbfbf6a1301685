package io.jvhost.testkit;

import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;

/**
 * A real backend in this process: a {@link ControlLoop}, a {@link Backend} with its pollers
 * running a {@link TestDevice}, and a {@link VhostUserServer} on a socket in a fresh temporary
 * directory. {@link #close()} tears all of it down. Test thread only.
 */
public final class BackendFixture implements AutoCloseable {
    /** How long a test waits for any single reply before it fails. */
    public static final Duration REPLY_TIMEOUT = Duration.ofSeconds(10);

    private final ServedDevice served;
    private final TestDevice device;

    private BackendFixture(ServedDevice served, TestDevice device) {
        this.served = served;
        this.device = device;
    }

    public static BackendFixture start(TestDevice device) throws IOException {
        return start(device, BackendOptions.DEFAULT);
    }

    /** Starts a backend serving {@code device} with {@code options}; the server is listening on return. */
    public static BackendFixture start(TestDevice device, BackendOptions options) throws IOException {
        return new BackendFixture(ServedDevice.start("test", device, options), device);
    }

    public Path socket() {
        return served.server.path();
    }

    public TestDevice device() {
        return device;
    }

    public Backend backend() {
        return served.backend;
    }

    public VhostUserServer server() {
        return served.server;
    }

    public ControlLoop loop() {
        return served.loop;
    }

    /** A new frontend connection whose replies are bounded by {@link #REPLY_TIMEOUT}. */
    public Frontend connect() throws IOException {
        return served.connect(REPLY_TIMEOUT);
    }

    /**
     * {@link #connect()}, then REPLY_ACK negotiated (and no other protocol feature), so that any
     * request without a reply of its own can ask for an ack ({@code Frontend.requestWithAck}).
     */
    public Frontend connectWithAcks() throws IOException {
        Frontend f = connect();
        try {
            f.setProtocolFeatures(ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK));
            return f;
        } catch (IOException | RuntimeException e) {
            f.close();
            throw e;
        }
    }

    /**
     * Returns once every earlier connection's session has ended and released what it held: the
     * server accepts the next frontend only after that, so a GET_FEATURES answered on a new
     * connection proves it. Returns the features offered; fails if the backend does not answer.
     */
    public long awaitSessionsEnded() throws IOException {
        return served.awaitSessionsEnded(REPLY_TIMEOUT);
    }

    /**
     * The process's open fds while exactly one idle frontend is connected, after every earlier
     * session has been cleaned up (see {@link #awaitSessionsEnded()}). Two such snapshots taken
     * around some work differ only by what that work leaked, with no waiting for async cleanup.
     */
    public Map<Integer, String> fdsWhileIdle() throws IOException {
        try (Frontend f = connect()) {
            f.getFeatures();
            return OpenFds.snapshot();
        }
    }

    /** Ends any session (waiting for its cleanup), then stops the server, the pollers and the loop. */
    @Override
    public void close() throws IOException {
        try {
            awaitSessionsEnded();
        } finally {
            served.close();
        }
    }
}
