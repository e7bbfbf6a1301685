/** jvhost's vhost-user backend framework: protocol, guest memory, rings, pollers and the device SPI. */
module io.jvhost.core {
    requires io.netty.transport;
    requires io.netty.transport.classes.epoll;
    requires io.netty.transport.unix.common;
    requires io.netty.common;
    requires org.jctools.core;
    requires org.slf4j;
    requires HdrHistogram;

    exports io.jvhost.core.device;
    exports io.jvhost.core.metrics;
    exports io.jvhost.core.ring;
    exports io.jvhost.core.memory;
    exports io.jvhost.core.runtime;
    exports io.jvhost.core.transport;
    exports io.jvhost.core.protocol;
    exports io.jvhost.core.sys;
}
