package io.jvhost.cli.rng;

import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.ring.ChainCursor;
import io.jvhost.core.ring.DescriptorChain;
import io.jvhost.core.ring.VirtQueue;

import java.lang.foreign.MemorySegment;
import java.security.SecureRandom;

/**
 * virtio-rng (virtio 1.2 §5.4): the worked example of the device API. One queue; the driver posts
 * writable buffers and the device fills them with entropy from {@link SecureRandom}.
 */
public final class RngDevice implements VirtioDevice {
    public static final int DEVICE_TYPE = 4;
    /** Caps one request so a huge buffer cannot keep the poller from its other queues. */
    static final int MAX_REQUEST = 64 * 1024;

    @Override
    public int deviceType() {
        return DEVICE_TYPE;
    }

    @Override
    public int queueCount() {
        return 1;
    }

    @Override
    public long features() {
        return 0; // no device-specific features; the framework adds VERSION_1 and the ring features
    }

    @Override
    public QueueHandler handler(int index) {
        return new Handler();
    }

    /** Runs on the poller thread; reuses one buffer, so nothing is allocated per request. */
    static final class Handler implements QueueHandler {
        private final SecureRandom random = new SecureRandom();
        private final byte[] entropy = new byte[4096];
        private final MemorySegment source = MemorySegment.ofArray(entropy);
        private final ChainCursor cursor = new ChainCursor();

        @Override
        public int process(VirtQueue queue, int budget) {
            int done = 0;
            for (DescriptorChain c; done < budget && (c = queue.next()) != null; done++) {
                queue.complete(c, fill(c));
            }
            queue.publish();
            return done;
        }

        /** Fills the writable buffers, however many and however split, with fresh entropy. */
        private long fill(DescriptorChain c) {
            long wanted = Math.min(c.writableLength(), MAX_REQUEST);
            long written = 0;
            int used = entropy.length;
            ChainCursor b = cursor.writable(c, 0);
            while (written < wanted) {
                if (used == entropy.length) {
                    random.nextBytes(entropy);
                    used = 0;
                }
                if (!b.next(Math.min(entropy.length - used, wanted - written))) {
                    break;
                }
                written += b.copyFrom(source, used);
                used += (int) b.length();
            }
            return written;
        }
    }
}
