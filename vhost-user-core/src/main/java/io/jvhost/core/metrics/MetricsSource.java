package io.jvhost.core.metrics;

/** Something that reports one device's metrics at a scrape ({@code runtime.Backend} is one). */
public interface MetricsSource {
    /** The device's values now. Any thread; reads poller-written counters without locks. */
    DeviceSnapshot metrics();
}
