package io.jvhost.net;

import io.jvhost.core.ring.ChainCursor;

import java.lang.foreign.MemorySegment;

/**
 * What a guest NIC is connected to, and the public packet-handler API: implement it to receive the
 * guest's frames in your own code and to send frames to the guest through {@link GuestNic}.
 *
 * <h2>Threads</h2>
 * Each queue pair runs on one poller thread, which serves both of its rings. For a pair,
 * {@link #onFrame} and {@link #poll} are called only on that pair's poller, one call at a time,
 * and must not block; calls for different pairs may run at the same time on their own pollers.
 * That holds for every frame, including those the device sends on the guest's behalf: the RARP
 * announcement that SEND_RARP asks for after a migration arrives on the control thread, which hands
 * it to pair 0's poller, and the port hears it there like any other frame. So inside
 * {@code onFrame} and {@code poll} a port may use per-pair state without locks and answer with
 * {@link GuestNic#deliver} for the same pair; from any other thread it uses
 * {@link GuestNic#inject}. (Once a backend is closing and a poller thread has ended, the last frames
 * of its stopping queues may come on the thread closing it: still one call at a time.)
 */
public interface NetPort {
    /** The NIC this port serves; called once, on the thread creating the {@link NetDevice}, before any frame. */
    default void attach(GuestNic nic) {}

    /**
     * A frame the guest sent on queue pair {@code pair} (or the device sent for it, like the RARP
     * announcement), without the virtio-net header: the bytes {@code [offset, offset + length)} of
     * {@code memory}. Pair's poller thread.
     *
     * <p>{@code memory} is always native (so it can go straight to a system call such as a TAP
     * write): the mapping of the guest memory region holding the frame, a scratch copy when the
     * guest scattered the frame over several buffers, or a pooled packet buffer for an
     * announcement. Read only those bytes, never write them, and only during the call: the guest
     * or the device reuses them afterwards, so copy what you keep. Nothing is allocated per frame;
     * {@code memory.asSlice(offset, length)} makes a slice if you need one (one object per call).
     */
    void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length);

    /**
     * The offloads this port handles, as virtio-net feature bits (see {@link NetHeader}): among
     * {@link NetHeader#HOST_OFFLOADS} those it takes from the guest (frames that still need their
     * checksum, TCP segments up to 64 KiB: {@link #onFrame(GuestNic, int, NetHeader, MemorySegment, long, long)}),
     * among {@link NetHeader#GUEST_OFFLOADS} those it may hand the guest through
     * {@link GuestNic#deliver(int, NetHeader, MemorySegment, long, long)} (which completes in
     * software what the guest did not accept). The device offers the guest these alone, none when
     * offloads are off. Default: none, plain frames both ways.
     */
    default long offloads() {
        return 0;
    }

    /**
     * The offload features the guest accepted, a subset of {@link #offloads()}; on the control
     * thread whenever the driver sets its features (0 after a reset), before frames that use them.
     */
    default void offloadsAccepted(long features) {}

    /**
     * A frame the guest sent with its offload header: {@code header} says whether the transport
     * checksum is still to be computed and whether the frame is a TCP segment to cut at
     * {@link NetHeader#gsoSize()} (already checked against the frame and the negotiated features).
     * Only ports that declare {@link #offloads()} get non-plain headers; the default passes the frame
     * on to {@link #onFrame(GuestNic, int, MemorySegment, long, long)}. Same thread and lifetime rules.
     */
    default void onFrame(GuestNic nic, int pair, NetHeader header, MemorySegment memory, long offset, long length) {
        onFrame(nic, pair, memory, offset, length);
    }

    /**
     * A frame the guest scattered over several buffers, offered as it lies before it is copied
     * together: {@code pieces} stands on its first byte, and each {@link ChainCursor#next(long)}
     * (asked for at most the bytes left of {@code length}) gives the next piece of guest memory.
     * Return true when the port took the frame (e.g. with one gathering write); false to get it as
     * one piece, a copy, through {@link #onFrame(GuestNic, int, NetHeader, MemorySegment, long, long)}
     * (the cursor may have moved by then). Same thread and lifetime rules; the pieces must not be
     * written. Default: false.
     */
    default boolean onFramePieces(GuestNic nic, int pair, NetHeader header, ChainCursor pieces, long length) {
        return false;
    }

    /**
     * The frames of one burst the guest sent on {@code pair} (or that the device sent for it) have
     * all been given to {@link #onFrame}: a port that holds frames back, to hand them on together
     * (e.g. into the guest with the burst {@link GuestNic#deliver(int, MemorySegment[], long[], long[], int)}),
     * sends them now. Called after each burst the transmit queue takes at once and at the end of
     * its batch, before the receive queue is published; frames delivered to the guest from here or
     * from {@code onFrame} answer its transmit, and are shown to it a few at a time as they are
     * written. Pair's poller thread. Default: nothing.
     */
    default void flush(GuestNic nic, int pair) {}

    /**
     * Called on every duty cycle of the pair's poller (that thread only): produce frames for the
     * guest here with {@link GuestNic#deliver}. Returns the work done (0 lets the poller sleep).
     */
    default int poll(GuestNic nic, int pair) {
        return 0;
    }

    /**
     * An fd whose readability should wake the pair's poller (e.g. a TAP queue); -1 for none. Asked
     * on the pair's poller when its receive queue starts.
     */
    default int wakeupFd(int pair) {
        return -1;
    }

    /** One line of counters for logs and the demo. Any thread. */
    default String describe() {
        return getClass().getSimpleName();
    }

    /**
     * Releases what the port holds (a TAP's fds, its place on a switch), once its NIC's queues have
     * stopped: the NIC was removed or the process is ending. The thread closing the device.
     */
    default void close() {
    }
}
