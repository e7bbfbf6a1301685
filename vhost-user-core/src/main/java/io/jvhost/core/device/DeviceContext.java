package io.jvhost.core.device;

/** What the framework offers a device beyond its queues. Any thread may call these. */
public interface DeviceContext {
    /**
     * Tells the driver that the configuration space changed (e.g. a disk was resized): the
     * frontend gets CONFIG_CHANGE_MSG on the backend channel, re-reads the config and interrupts
     * the guest. Does nothing while no frontend that negotiated BACKEND_REQ and CONFIG is connected.
     */
    void configChanged();
}
