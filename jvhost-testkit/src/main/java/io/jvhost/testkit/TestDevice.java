package io.jvhost.testkit;

import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.ring.DescriptorChain;
import io.jvhost.core.ring.VirtQueue;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A device for framework tests: N queues whose handler echoes each chain's readable bytes into its
 * writable buffers (or, for a chain with nothing to read, fills them with {@link #FILL}) and
 * records every chain it saw, on which thread, and every lifecycle call the framework made.
 *
 * <p>The handler allocates per chain, which a real device must not; records are published before
 * the used element, so a test that has seen the used element also sees the record.
 */
public final class TestDevice implements VirtioDevice {
    public static final int DEVICE_TYPE = 63;
    public static final byte FILL = (byte) 0xA5;
    /** A device-specific feature bit the test device offers (bit 5, below the transport range). */
    public static final long DEVICE_FEATURE = 1L << 5;
    private static final int MAX_COPY = 64 * 1024;

    private final int queueCount;
    private final int maxQueueSize;
    private final long features;
    private final long protocolFeatures;
    private final int[][] queueSets;
    private final byte[] initialConfig;
    private final byte[] config;
    private final int writableOffset;
    private final int writableLength;
    private final boolean sleepWhenIdle;
    private final List<ConcurrentLinkedQueue<Seen>> seen = new ArrayList<>();
    private final AtomicInteger[] started;
    private final AtomicInteger[] stopped;
    private final AtomicInteger resets = new AtomicInteger();
    private final AtomicLong featuresAcked = new AtomicLong(-1);
    private volatile boolean hold;
    private volatile boolean holding;

    /** One chain the handler processed: its head, the bytes it read and the room it had to write. */
    public record Seen(int queue, int head, byte[] readable, long writableLength, long written, String thread) {}

    private TestDevice(Builder b) {
        this.queueCount = b.queues;
        this.maxQueueSize = b.maxQueueSize;
        this.features = b.features;
        this.protocolFeatures = b.protocolFeatures;
        this.queueSets = b.queueSets;
        this.initialConfig = b.config.clone();
        this.config = b.config.clone();
        this.writableOffset = b.writableOffset;
        this.writableLength = b.writableLength < 0 ? config.length : b.writableLength;
        this.sleepWhenIdle = b.sleepWhenIdle;
        this.started = new AtomicInteger[queueCount];
        this.stopped = new AtomicInteger[queueCount];
        for (int i = 0; i < queueCount; i++) {
            seen.add(new ConcurrentLinkedQueue<>());
            started[i] = new AtomicInteger();
            stopped[i] = new AtomicInteger();
        }
    }

    /** A device with {@code queues} queues, max queue size 256, {@link #DEVICE_FEATURE} and a 16-byte config. */
    public static Builder withQueues(int queues) {
        return new Builder(queues);
    }

    public static final class Builder {
        private final int queues;
        private int maxQueueSize = 256;
        private long features = DEVICE_FEATURE;
        private long protocolFeatures;
        private int[][] queueSets;
        private byte[] config = defaultConfig(16);
        private int writableOffset;
        private int writableLength = -1;
        private boolean sleepWhenIdle;

        private Builder(int queues) {
            this.queues = queues;
        }

        public Builder maxQueueSize(int size) { this.maxQueueSize = size; return this; }
        public Builder features(long f) { this.features = f; return this; }
        public Builder protocolFeatures(long f) { this.protocolFeatures = f; return this; }
        public Builder queueSets(int[][] sets) { this.queueSets = sets; return this; }
        /** Its handlers say {@link QueueHandler#sleepWhenIdle}: their work comes from other threads. */
        public Builder sleepWhenIdle(boolean s) { this.sleepWhenIdle = s; return this; }
        /** A copy of {@code c} is kept. */
        public Builder config(byte[] c) { this.config = c.clone(); return this; }

        /**
         * Accepts config writes only inside {@code [offset, offset + length)}, as a real device
         * refuses writes to its read-only fields (virtio-blk: only {@code writeback}). Default: all.
         */
        public Builder writableConfig(int offset, int length) {
            this.writableOffset = offset;
            this.writableLength = length;
            return this;
        }

        public TestDevice build() {
            return new TestDevice(this);
        }
    }

    /** Config bytes 1, 2, 3, ... so that a read at the wrong offset shows. */
    public static byte[] defaultConfig(int length) {
        byte[] c = new byte[length];
        for (int i = 0; i < length; i++) {
            c[i] = (byte) (i + 1);
        }
        return c;
    }

    @Override
    public int deviceType() {
        return DEVICE_TYPE;
    }

    @Override
    public int queueCount() {
        return queueCount;
    }

    @Override
    public int maxQueueSize() {
        return maxQueueSize;
    }

    @Override
    public long features() {
        return features;
    }

    @Override
    public void featuresAcked(long f) {
        featuresAcked.set(f);
    }

    @Override
    public long protocolFeatures() {
        return protocolFeatures;
    }

    @Override
    public synchronized byte[] config() {
        return config.clone();
    }

    /** Accepts writes that stay inside the config struct and its writable part. */
    @Override
    public synchronized boolean writeConfig(int offset, byte[] data) {
        if (offset < 0 || offset + data.length > config.length
                || offset < writableOffset || offset + data.length > writableOffset + writableLength) {
            return false;
        }
        System.arraycopy(data, 0, config, offset, data.length);
        return true;
    }

    /** Back to the initial config; counted. */
    @Override
    public synchronized void reset() {
        System.arraycopy(initialConfig, 0, config, 0, config.length);
        resets.incrementAndGet();
    }

    @Override
    public int[][] queueSets() {
        return queueSets != null ? queueSets : VirtioDevice.super.queueSets();
    }

    @Override
    public QueueHandler handler(int index) {
        return new Handler(index);
    }

    // ---- what the framework did ---------------------------------------------------------------

    /** Chains processed on queue {@code q}, in order. */
    public List<Seen> seen(int q) {
        return List.copyOf(seen.get(q));
    }

    public int seenCount(int q) {
        return seen.get(q).size();
    }

    /** How often queue {@code q} was started / stopped on its poller. */
    public int started(int q) {
        return started[q].get();
    }

    public int stopped(int q) {
        return stopped[q].get();
    }

    public int resets() {
        return resets.get();
    }

    /**
     * Makes every handler spin in its next {@code process} call until {@link #releaseProcessing()}:
     * its poller then takes no command, which lets a test order events around a busy poller. A real
     * handler must never do this.
     */
    public void holdProcessing() {
        hold = true;
    }

    public void releaseProcessing() {
        hold = false;
    }

    /** Whether a handler is spinning in {@link #holdProcessing()} right now. */
    public boolean processingHeld() {
        return holding;
    }

    /** The last SET_FEATURES value, or -1 before the first. */
    public long featuresAcked() {
        return featuresAcked.get();
    }

    private final class Handler implements QueueHandler {
        private final int queue;

        Handler(int queue) {
            this.queue = queue;
        }

        @Override
        public boolean sleepWhenIdle() {
            return sleepWhenIdle;
        }

        @Override
        public int process(VirtQueue q, int budget) {
            while (hold) {
                holding = true;
                Thread.onSpinWait();
            }
            holding = false;
            int done = 0;
            for (DescriptorChain c; done < budget && (c = q.next()) != null; done++) {
                byte[] in = new byte[(int) Math.min(c.readableLength(), MAX_COPY)];
                c.read(0, MemorySegment.ofArray(in), 0, in.length);
                long room = c.writableLength();
                long written;
                if (in.length > 0) {
                    written = c.write(MemorySegment.ofArray(in), 0, 0, Math.min(in.length, room));
                } else {
                    byte[] fill = new byte[(int) Math.min(room, MAX_COPY)];
                    Arrays.fill(fill, FILL);
                    written = c.write(MemorySegment.ofArray(fill), 0, 0, fill.length);
                }
                seen.get(queue).add(new Seen(queue, c.head(), in, room, written, Thread.currentThread().getName()));
                q.complete(c, written);
            }
            q.publish();
            return done;
        }

        @Override
        public void started(VirtQueue q) {
            started[queue].incrementAndGet();
        }

        @Override
        public void stopped(VirtQueue q) {
            stopped[queue].incrementAndGet();
        }
    }
}
