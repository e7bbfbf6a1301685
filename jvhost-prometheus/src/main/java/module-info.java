/** jvhost's metrics as Prometheus text exposition at /metrics (the official Prometheus Java client). */
module io.jvhost.prometheus {
    requires io.jvhost.core;
    requires io.prometheus.metrics.model;
    requires io.prometheus.metrics.exporter.httpserver;

    exports io.jvhost.prometheus;
}
