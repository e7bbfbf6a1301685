/** virtio-blk over vhost-user with a pluggable asynchronous storage API. */
module io.jvhost.blk {
    requires io.jvhost.core;
    requires org.jctools.core;
    requires org.slf4j;
    // The NBD client store (io.jvhost.blk.nbd).
    requires io.netty.buffer;
    requires io.netty.codec;
    requires io.netty.common;
    requires io.netty.handler;
    requires io.netty.transport;
    requires io.netty.transport.classes.epoll;
    requires io.netty.transport.unix.common;

    exports io.jvhost.blk;
    exports io.jvhost.blk.nbd;
}
