package io.jvhost.cli;

import io.jvhost.core.metrics.QueueLatency;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What {@code --latency} prints: with several sockets (and so several devices) served at once,
 * each line says which device and queue it is about.
 */
class LatencyOutputTest {
    @Test
    void shouldNameTheDeviceAndQueueInEachLatencyLine() {
        QueueLatency latency = new QueueLatency();
        latency.recorder().workSeen();
        latency.recorder().published(4);

        String line = ServeOptions.latencyLine("blk0", 1, latency);

        assertTrue(line.startsWith("blk0 queue 1: 1 batches, kick-to-publish p50 "), line);
        assertTrue(line.endsWith(", mean batch 4.0"), line);
    }
}
