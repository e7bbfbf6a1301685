package io.jvhost.testkit;

import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;
import io.jvhost.testkit.frontend.Frontend;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/**
 * What {@link BackendFixture} and {@link DeviceRig} both stand on: a {@link ControlLoop}, a
 * {@link Backend} running one device with its pollers, and a {@link VhostUserServer} on a socket
 * in a fresh temporary directory. Test thread only.
 */
final class ServedDevice implements AutoCloseable {
    final Path dir;
    final ControlLoop loop;
    final Backend backend;
    final VhostUserServer server;

    private ServedDevice(Path dir, ControlLoop loop, Backend backend, VhostUserServer server) {
        this.dir = dir;
        this.loop = loop;
        this.backend = backend;
        this.server = server;
    }

    /** Starts backend {@code name} serving {@code device}; the server listens on {@code name}.sock on return. */
    static ServedDevice start(String name, VirtioDevice device, BackendOptions options) throws IOException {
        Path dir = Files.createTempDirectory("jvhost-" + name);
        ControlLoop loop = new ControlLoop();
        Backend backend = null;
        try {
            backend = new Backend(name, device, options, loop);
            backend.start();
            VhostUserServer server = VhostUserServer.listen(dir.resolve(name + ".sock"), backend, loop);
            return new ServedDevice(dir, loop, backend, server);
        } catch (IOException | RuntimeException e) {
            if (backend != null) {
                backend.close();
            }
            loop.close();
            Files.deleteIfExists(dir);
            throw e;
        }
    }

    /** A new frontend connection whose replies are bounded by {@code timeout}. */
    Frontend connect(Duration timeout) throws IOException {
        return Frontend.connect(server.path(), timeout.toMillis()).replyTimeout(timeout);
    }

    /**
     * Returns once every earlier connection's session has ended and released what it held: the
     * server accepts the next frontend only after that, so a GET_FEATURES answered on a new
     * connection proves it. Returns the features offered.
     */
    long awaitSessionsEnded(Duration timeout) throws IOException {
        try (Frontend f = connect(timeout)) {
            return f.getFeatures();
        }
    }

    /** Stops the server, the pollers and the loop, and removes the socket and its directory. */
    @Override
    public void close() throws IOException {
        server.close();
        backend.close();
        loop.close();
        Files.deleteIfExists(server.path());
        Files.deleteIfExists(dir);
    }
}
