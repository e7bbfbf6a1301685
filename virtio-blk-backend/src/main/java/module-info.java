/** virtio-blk over vhost-user with a pluggable asynchronous storage API. */
module io.jvhost.blk {
    requires io.jvhost.core;
    requires org.jctools.core;
    requires org.slf4j;

    exports io.jvhost.blk;
}
