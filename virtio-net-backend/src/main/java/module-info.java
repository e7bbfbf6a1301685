/** virtio-net over vhost-user: bench ports, an in-process L2 switch with a VXLAN uplink, TAP, and a packet-handler API. */
module io.jvhost.net {
    requires io.jvhost.core;
    requires org.jctools.core;
    requires org.slf4j;

    exports io.jvhost.net;
}
