package io.jvhost.core.metrics;

/**
 * Where a queue's (or a device's) values go at a scrape: the framework reports its own counters
 * here and then asks the device's handler for its own ({@code QueueHandler.metrics}). Names follow
 * the Prometheus conventions, snake_case with a {@code jvhost_} prefix and a unit suffix where one
 * applies; a counter's name is given without {@code _total}, which exposition formats append.
 * Several calls with one name form one family (e.g. {@code jvhost_queue_drops} with one
 * {@code reason} per call); they must agree on type, help and label name.
 *
 * <p>Called on the scraping thread: implementations read poller-written fields with opaque (or
 * acquire) reads, never locks, and never call into a metrics library from the data path.
 */
public interface MetricSink {
    /** The family every drop goes to, one {@code reason} each: see {@link #drops}. */
    String DROPS = "jvhost_queue_drops";
    String DROPS_HELP = "Requests or packets the backend dropped or refused, by reason (malformed chains completed"
            + " with 0 bytes, frames with no receive buffer, ...).";
    /** The family every failure goes to, one {@code kind} each: see {@link #errors}. */
    String ERRORS = "jvhost_queue_errors";
    String ERRORS_HELP = "Failures on the queue, by kind (ring corruption, handler exception, I/O error, ...).";

    /** A value that only grows (while the process lives). */
    void counter(String name, String help, long value);

    /** A value that only grows, one of a family told apart by {@code label=labelValue}. */
    void counter(String name, String help, String label, String labelValue, long value);

    /** A value that goes up and down (a depth, a state). */
    void gauge(String name, String help, long value);

    /**
     * Time that only grows, one of a family told apart by {@code label=labelValue}: {@code name}
     * ends in {@code _seconds}, {@code nanos} is in nanoseconds (exposed in seconds).
     */
    void timeCounter(String name, String help, String label, String labelValue, long nanos);

    /** Requests or packets dropped or refused for {@code reason} (snake_case), in the one drops family. */
    default void drops(String reason, long value) {
        counter(DROPS, DROPS_HELP, "reason", reason, value);
    }

    /** Failures of {@code kind} (snake_case), in the one errors family. */
    default void errors(String kind, long value) {
        counter(ERRORS, ERRORS_HELP, "kind", kind, value);
    }
}
