/**
 * jvhost's test kit: the frontend simulator, the QEMU guest driver, QEMU 7.2's message sequences,
 * test fixtures and the fuzz harness. Tests and benchmarks depend on it; the library never does.
 */
module io.jvhost.testkit {
    requires transitive io.jvhost.core;
    requires transitive org.junit.jupiter.api;
    requires net.jqwik.api;
    requires org.slf4j;
    requires org.apache.commons.compress;

    exports io.jvhost.testkit;
    exports io.jvhost.testkit.frontend;
    exports io.jvhost.testkit.guest;
    exports io.jvhost.testkit.fuzz;
}
