/** The jvhost command line: device commands and the demo. */
module io.jvhost.cli {
    requires io.jvhost.core;
    requires io.jvhost.blk;
    requires io.jvhost.net;
    requires info.picocli;
    requires org.slf4j;
    requires jdk.unsupported;

    opens io.jvhost.cli to info.picocli;
    opens io.jvhost.cli.rng to info.picocli;
    opens io.jvhost.cli.blk to info.picocli;
    opens io.jvhost.cli.net to info.picocli;
    exports io.jvhost.cli.rng;
}
