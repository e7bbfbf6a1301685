package io.jvhost.prometheus;

import io.jvhost.core.metrics.MetricsRegistry;

import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.model.registry.PrometheusRegistry;

import java.io.IOException;
import java.net.InetSocketAddress;

/**
 * An HTTP server with the Prometheus text exposition of a {@link MetricsRegistry} at
 * {@code /metrics} (the Prometheus client's own JDK-HttpServer exporter, on daemon threads of its
 * own: a scrape never runs on a poller or the control loop). What {@code --metrics HOST:PORT} starts.
 */
public final class MetricsServer implements AutoCloseable {
    private final HTTPServer server;
    private final String host;

    private MetricsServer(HTTPServer server, String host) {
        this.server = server;
        this.host = host;
    }

    /**
     * Listens on {@code address} (port 0: any free port, see {@link #port()}) and serves
     * {@code metrics}' devices, whichever are registered at each scrape.
     */
    public static MetricsServer start(InetSocketAddress address, MetricsRegistry metrics) throws IOException {
        PrometheusRegistry registry = new PrometheusRegistry();
        registry.register(new JvhostCollector(metrics));
        HTTPServer server = HTTPServer.builder().inetAddress(address.getAddress()).port(address.getPort())
                .registry(registry).buildAndStart();
        return new MetricsServer(server, address.getAddress().getHostAddress());
    }

    /**
     * Parses {@code HOST:PORT} ({@code 127.0.0.1:9100}, {@code localhost:0}, {@code [::1]:9100},
     * or {@code :9100} for every interface).
     *
     * @throws IllegalArgumentException saying what is wrong, in one line
     */
    public static InetSocketAddress parse(String hostPort) {
        int colon = hostPort.lastIndexOf(':');
        if (colon < 0) {
            throw new IllegalArgumentException("expected HOST:PORT, e.g. 127.0.0.1:9100, got '" + hostPort + "'");
        }
        String host = hostPort.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port;
        try {
            port = Integer.parseInt(hostPort.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("port of '" + hostPort + "' is not a number");
        }
        if (port < 0 || port > 65535) {
            throw new IllegalArgumentException("port of '" + hostPort + "' is out of 0..65535");
        }
        InetSocketAddress a = host.isEmpty() ? new InetSocketAddress(port) : new InetSocketAddress(host, port);
        if (a.isUnresolved()) {
            throw new IllegalArgumentException("cannot resolve host '" + host + "'");
        }
        return a;
    }

    /** The port it listens on (the one the system chose, when started on port 0). */
    public int port() {
        return server.getPort();
    }

    /** {@code http://HOST:PORT/metrics}. */
    public String url() {
        String h = host.contains(":") ? "[" + host + "]" : host;
        return "http://" + h + ":" + port() + "/metrics";
    }

    @Override
    public void close() {
        server.close();
    }
}
