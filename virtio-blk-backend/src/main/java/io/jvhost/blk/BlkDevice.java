package io.jvhost.blk;

import io.jvhost.core.device.DeviceContext;
import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.device.QueueHandler;
import io.jvhost.core.device.VirtioDevice;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static io.jvhost.core.device.VirtioFeatures.*;

/**
 * virtio-blk (virtio 1.2 §5.2) over any {@link BlockStore}: one request queue per guest vCPU up to
 * {@code queues}, features and config space derived from the store's capabilities.
 */
public final class BlkDevice implements VirtioDevice {
    public static final int DEVICE_TYPE = 2;
    static final int SECTOR = 512;

    /** {@code bytes} rounded down to whole sectors: what a store offers of a backing file or image. */
    static long wholeSectors(long bytes) {
        return bytes & ~(long) (SECTOR - 1);
    }

    /** The serial a guest reads with GET_ID: the first 20 bytes of {@code name} (virtio 1.2 §5.2.6). */
    static String serial(String name) {
        return name.length() > 20 ? name.substring(0, 20) : name;
    }
    static final int SIZE_MAX = 1 << 20;
    /**
     * seg_max. Header and status take two descriptors, and no chain, indirect or not, may be longer
     * than the queue (virtio 1.2 §2.7.5.3.1; the rings refuse longer ones), whose size the frontend
     * sets only after reading the config. 126 fits QEMU's vhost-user-blk default queue-size of 128;
     * QEMU's own virtio-blk advertises queue size - 2 for the same reason.
     */
    static final int SEG_MAX = 128 - 2;
    static final int MAX_DISCARD_SEG = 32;
    /** Largest discard / write-zeroes range, in sectors: 1 GiB keeps one request bounded. */
    static final int MAX_RANGE_SECTORS = 1 << 21;
    /** {@code struct virtio_blk_config} (virtio 1.2 §5.2.4): its size, and where {@code writeback} sits. */
    static final int CONFIG_SIZE = 60, WRITEBACK_OFFSET = 32;
    static final int QUEUE_SIZE = 1024;

    private final BlockStore store;
    private final int queues;
    private volatile boolean writeback = true;
    private volatile long acked;
    private volatile DeviceContext context;

    public BlkDevice(BlockStore store, int queues) {
        if (queues < 1 || queues > 64) {
            throw new IllegalArgumentException("queues must be 1..64: " + queues);
        }
        if (store.size() % SECTOR != 0 || Integer.bitCount(store.blockSize()) != 1 || store.blockSize() < SECTOR) {
            throw new IllegalArgumentException("store size must be a multiple of 512 and its block size a power of two >= 512");
        }
        this.store = store;
        this.queues = queues;
    }

    public BlockStore store() {
        return store;
    }

    @Override
    public int deviceType() {
        return DEVICE_TYPE;
    }

    @Override
    public int queueCount() {
        return queues;
    }

    @Override
    public int maxQueueSize() {
        return QUEUE_SIZE;
    }

    @Override
    public long features() {
        long f = bit(BLK_SIZE_MAX) | bit(BLK_SEG_MAX) | bit(BLK_BLK_SIZE) | bit(BLK_TOPOLOGY);
        if (queues > 1) {
            f |= bit(BLK_MQ);
        }
        if (store.readOnly()) {
            f |= bit(BLK_RO);
        }
        if (store.canFlush()) {
            f |= bit(BLK_FLUSH) | bit(BLK_CONFIG_WCE);
        }
        if (store.canDiscard() && !store.readOnly()) {
            f |= bit(BLK_DISCARD);
        }
        if (store.canWriteZeroes() && !store.readOnly()) {
            f |= bit(BLK_WRITE_ZEROES);
        }
        return f;
    }

    /**
     * IN_ORDER refused: requests complete as the store finishes them, often out of order, and in
     * order the queue would hold a quick read back behind a slow flush. Packed rings are welcome.
     */
    @Override
    public long refusedFeatures() {
        return bit(IN_ORDER);
    }

    @Override
    public void bind(DeviceContext context) {
        this.context = context;
    }

    /**
     * Asks the store whether its size changed and, if so, tells the guest (CONFIG_CHANGE). Call it
     * periodically or when you know the image was resized. Any thread; may block briefly.
     */
    public boolean checkResize() {
        DeviceContext c = context;
        if (store.refreshSize() && c != null) {
            c.configChanged();
            return true;
        }
        return false;
    }

    /** Inflight tracking (INFLIGHT_SHMFD): a restarted backend resubmits what a crashed one left. */
    @Override
    public long protocolFeatures() {
        return ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD);
    }

    @Override
    public void featuresAcked(long features) {
        acked = features;
    }

    boolean acked(int feature) {
        return (acked & bit(feature)) != 0;
    }

    /**
     * Whether writes may sit in a volatile cache: only if the driver accepted FLUSH (without it, it
     * may assume a writethrough cache and never flush, virtio 1.2 §5.2.5.1) and has not turned the
     * cache off through CONFIG_WCE.
     */
    boolean writeback() {
        return writeback && store.canFlush() && acked(BLK_FLUSH);
    }

    @Override
    public byte[] config() {
        int sectorsPerBlock = store.blockSize() / SECTOR;
        ByteBuffer b = ByteBuffer.allocate(CONFIG_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(0, store.size() / SECTOR);
        b.putInt(8, SIZE_MAX);
        b.putInt(12, SEG_MAX);
        b.putInt(20, store.blockSize());
        b.put(24, (byte) 0); // physical_block_exp
        b.put(25, (byte) 0); // alignment_offset
        b.putShort(26, (short) 1); // min_io_size, in logical blocks
        b.putInt(28, 0); // opt_io_size
        // Before feature negotiation (QEMU reads the config at connect time): the mode a driver that
        // accepts FLUSH gets. After it, writethrough unless FLUSH was accepted (§5.2.5.2).
        boolean wce = acked == 0 ? writeback && store.canFlush() : writeback();
        b.put(WRITEBACK_OFFSET, (byte) (wce ? 1 : 0));
        b.putShort(34, (short) queues);
        b.putInt(36, MAX_RANGE_SECTORS);
        b.putInt(40, MAX_DISCARD_SEG);
        b.putInt(44, sectorsPerBlock);
        b.putInt(48, MAX_RANGE_SECTORS);
        b.putInt(52, MAX_DISCARD_SEG);
        b.put(56, (byte) 1); // write_zeroes_may_unmap
        return b.array();
    }

    @Override
    public boolean writeConfig(int offset, byte[] data) {
        if (offset == WRITEBACK_OFFSET && data.length == 1 && store.canFlush()) {
            writeback = data[0] != 0;
            return true;
        }
        return false;
    }

    @Override
    public void reset() {
        writeback = true;
        acked = 0;
    }

    /** One poller per queue: guest vCPUs submit to their own queue and should not wait on each other. */
    @Override
    public int[][] queueSets() {
        int[][] sets = new int[queues][];
        for (int i = 0; i < queues; i++) {
            sets[i] = new int[] {i};
        }
        return sets;
    }

    @Override
    public QueueHandler handler(int index) {
        return new BlkQueueHandler(this, QUEUE_SIZE, index);
    }
}
