/** The jvhost command line: device commands and the demo. */
module io.jvhost.cli {
    requires io.jvhost.core;
    requires io.jvhost.blk;
    requires io.jvhost.net;
    requires io.jvhost.prometheus;
    requires io.jvhost.perf;
    requires io.jvhost.testkit;
    requires jmh.core;
    requires info.picocli;
    requires com.fasterxml.jackson.databind;
    requires com.fasterxml.jackson.dataformat.yaml;
    requires org.slf4j;
    requires jdk.unsupported;

    opens io.jvhost.cli to info.picocli;
    opens io.jvhost.cli.rng to info.picocli;
    opens io.jvhost.cli.blk to info.picocli;
    opens io.jvhost.cli.net to info.picocli;
    opens io.jvhost.cli.bench to info.picocli;
    opens io.jvhost.cli.options to info.picocli;
    opens io.jvhost.cli.serve to info.picocli;
    exports io.jvhost.cli.rng;
}
