/**
 * jvhost's benchmarks: JMH microbenchmarks of the data path and end-to-end drivers that put jvhost
 * side by side with DPDK's vhost PMD and qemu-storage-daemon.
 */
module io.jvhost.perf {
    requires io.jvhost.core;
    requires io.jvhost.net;
    requires io.jvhost.blk;
    requires io.jvhost.testkit;
    requires com.fasterxml.jackson.databind;
    requires com.fasterxml.jackson.dataformat.csv;
    requires HdrHistogram;
    requires jmh.core;
    requires jdk.management;
    requires org.slf4j;

    exports io.jvhost.perf;
    exports io.jvhost.perf.jmh;
    exports io.jvhost.perf.jmh.jmh_generated;
    opens io.jvhost.perf.jmh;
    opens io.jvhost.perf.jmh.jmh_generated;
}
