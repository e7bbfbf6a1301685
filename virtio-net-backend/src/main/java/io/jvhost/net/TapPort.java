package io.jvhost.net;

import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.core.ring.ChainCursor;
import io.jvhost.core.sys.IoVector;
import io.jvhost.core.sys.TapInterface;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static io.jvhost.core.device.VirtioFeatures.*;
import static io.jvhost.core.sys.TapInterface.VNET_HEADER_SIZE;

/**
 * Connects the guest NIC to a Linux TAP interface, one TAP queue per queue pair. Every frame crosses
 * the TAP behind a virtio-net header (IFF_VNET_HDR), so checksum and TCP segmentation offloads go
 * through unchanged both ways: the guest's 64 KiB segments reach the kernel whole, and the kernel
 * hands over segments as large as the guest accepted (TUNSETOFFLOAD). Guest frames are written
 * straight from guest memory, also when they lie in several buffers (one writev of the pieces, as
 * QEMU's tap backend does); frames from the TAP are read into a per-pair buffer and copied once
 * into the guest's receive buffers. The TAP fd wakes the pair's poller.
 */
public final class TapPort implements NetPort, AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(TapPort.class);
    /** Pieces of guest memory one frame may take in a writev (a Linux guest's 64 KiB segment: a few). */
    static final int MAX_PIECES = 64;

    private final TapInterface tap;
    private final MemorySegment[] buffers;
    private final MemorySegment[] headerBytes;
    private final NetHeader[] headers;
    private final long[] pending;
    /** Per pair: the header and the pieces of a frame the guest scattered, for one writev. */
    private final IoVector[] vectors;
    /** Per queue pair of the NIC: each written by its pair's poller alone. */
    private long[] writeErrors = new long[0];
    private GuestNic nic;

    public TapPort(String name, int pairs) throws NativeException {
        this(TapInterface.open(name, pairs, true), pairs);
    }

    /** On {@code tap}, opened with a virtio-net header and a queue per pair (by this process, or a predecessor: live upgrade). */
    public TapPort(TapInterface tap, int pairs) {
        if (tap.queueCount() != pairs || !tap.hasVnetHeader()) {
            throw new IllegalArgumentException("TAP " + tap.name() + " has " + tap.queueCount() + " queues, not " + pairs);
        }
        this.tap = tap;
        this.buffers = new MemorySegment[pairs];
        this.headerBytes = new MemorySegment[pairs];
        this.headers = new NetHeader[pairs];
        this.pending = new long[pairs];
        this.vectors = new IoVector[pairs];
        for (int i = 0; i < pairs; i++) {
            buffers[i] = Arena.ofAuto().allocate(VNET_HEADER_SIZE + NetHeader.MAX_GSO_FRAME, 64);
            headerBytes[i] = Arena.ofAuto().allocate(VNET_HEADER_SIZE, 8);
            headers[i] = new NetHeader();
            vectors[i] = new IoVector(MAX_PIECES + 1);
        }
        offloadsAccepted(0);
    }

    /** The TAP, e.g. to hand its fds to a successor. */
    public TapInterface tap() {
        return tap;
    }

    public String name() {
        return tap.name();
    }

    @Override
    public void attach(GuestNic nic) {
        this.nic = nic;
        this.writeErrors = new long[nic.pairs()];
    }

    /** The kernel takes any offload from us, and gives us those the guest accepts. */
    @Override
    public long offloads() {
        return NetHeader.HOST_OFFLOADS | NetHeader.GUEST_OFFLOADS;
    }

    /** Tells the kernel which offloads frames towards the guest may keep; it completes the others. */
    @Override
    public void offloadsAccepted(long features) {
        int flags = 0;
        if (VirtioFeatures.has(features, NET_GUEST_CSUM)) {
            flags |= TapInterface.TUN_F_CSUM;
            if (VirtioFeatures.has(features, NET_GUEST_TSO4)) {
                flags |= TapInterface.TUN_F_TSO4;
            }
            if (VirtioFeatures.has(features, NET_GUEST_TSO6)) {
                flags |= TapInterface.TUN_F_TSO6;
            }
            if (VirtioFeatures.has(features, NET_GUEST_ECN) && (flags & (TapInterface.TUN_F_TSO4 | TapInterface.TUN_F_TSO6)) != 0) {
                flags |= TapInterface.TUN_F_TSO_ECN;
            }
        }
        try {
            tap.setOffloads(flags);
        } catch (NativeException e) {
            // Then the kernel keeps completing everything itself: slower, never wrong.
            LOG.warn("TAP {}: offloads 0x{} refused: {}", tap.name(), Integer.toHexString(flags), e.getMessage());
        }
    }

    @Override
    public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length) {
        onFrame(nic, pair, headers[pair].clear(), memory, offset, length);
    }

    /**
     * On the pair's poller: the frame's pieces go to the TAP as they lie in guest memory, behind its
     * header, with one writev; false (copied together, then {@link #onFrame}) past
     * {@link #MAX_PIECES} pieces.
     */
    @Override
    public boolean onFramePieces(GuestNic nic, int pair, NetHeader header, ChainCursor pieces, long length) {
        MemorySegment h = headerBytes[pair];
        header.write(h, 0);
        IoVector v = vectors[pair].clear();
        v.add(h, 0, VNET_HEADER_SIZE);
        long left = length;
        for (; left > 0 && pieces.next(left); left -= pieces.length()) {
            if (!v.add(pieces.memory(), pieces.offset(), pieces.length())) {
                v.clear();
                return false;
            }
        }
        if (tap.write(pair % tap.queueCount(), v) < 0) {
            writeErrors[pair]++;
        }
        v.clear(); // drops the references to guest memory
        return true;
    }

    /** On the pair's poller; {@code memory} is native, so the frame goes to the TAP as it lies, behind its header. */
    @Override
    public void onFrame(GuestNic nic, int pair, NetHeader header, MemorySegment memory, long offset, long length) {
        int queue = pair % tap.queueCount();
        MemorySegment h = headerBytes[pair];
        header.write(h, 0);
        if (tap.write(queue, h, memory, offset, length) < 0) {
            writeErrors[pair]++; // interface down, its queue full, or a header the kernel refused: lost, as on a wire
        }
    }

    @Override
    public int poll(GuestNic nic, int pair) {
        int done = 0;
        MemorySegment buf = buffers[pair];
        NetHeader header = headers[pair];
        while (done < 64) {
            long n = pending[pair];
            if (n == 0) {
                n = tap.read(pair, buf);
                if (n <= 0) {
                    break; // EAGAIN: the poller's edge-triggered watch on the fd wakes us for more
                }
                if (n <= VNET_HEADER_SIZE) {
                    continue;
                }
            }
            header.read(buf, 0);
            int r = nic.deliver(pair, header, buf, VNET_HEADER_SIZE, n - VNET_HEADER_SIZE);
            if (r == GuestNic.NO_BUFFERS || r == GuestNic.NOT_RUNNING) {
                pending[pair] = n; // keep it until the guest posts buffers (it kicks then)
                break;
            }
            pending[pair] = 0;
            done++;
        }
        return done;
    }

    @Override
    public int wakeupFd(int pair) {
        return tap.fd(pair);
    }

    /** Closes the TAP's queues (a TAP jvhost created disappears with them); after the device stopped. */
    @Override
    public void close() {
        tap.close();
    }

    @Override
    public String describe() {
        long errors = 0;
        for (long e : writeErrors) {
            errors += e;
        }
        return "tap " + tap.name() + ": " + BenchPorts.total(nic) + (errors > 0 ? ", write errors " + errors : "");
    }
}
