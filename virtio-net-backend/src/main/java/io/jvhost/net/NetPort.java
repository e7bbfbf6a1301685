package io.jvhost.net;

import java.lang.foreign.MemorySegment;

/**
 * What a guest NIC is connected to, and the public packet-handler API: implement it to receive the
 * guest's frames in your own code and to send frames to the guest through {@link GuestNic}.
 *
 * <p>{@link #onFrame} and {@link #poll} run on the poller thread of the queue pair and must not
 * block. Besides, {@link #onFrame} may rarely be called on the control thread (the RARP announce
 * after a migration).
 */
public interface NetPort {
    /** The NIC this port serves; called once before any frame. */
    default void attach(GuestNic nic) {}

    /**
     * A frame the guest sent on queue pair {@code pair}, without the virtio-net header: the bytes
     * {@code [offset, offset + length)} of {@code memory}, which is the mapping of the guest memory
     * region holding the frame (or a scratch buffer when the frame was scattered over several
     * buffers). Read only those bytes, and only during the call: copy what you keep. Nothing is
     * allocated per frame; {@code memory.asSlice(offset, length)} makes a slice if you need one
     * (one object per call).
     *
     * <p>On the pair's poller thread {@code memory} is native; the control thread's RARP comes as a
     * heap segment.
     */
    void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length);

    /**
     * Called on every duty cycle of the pair's poller: produce frames for the guest here with
     * {@link GuestNic#deliver}. Returns the work done (0 lets the poller sleep).
     */
    default int poll(GuestNic nic, int pair) {
        return 0;
    }

    /** An fd whose readability should wake the pair's poller (e.g. a TAP queue); -1 for none. */
    default int wakeupFd(int pair) {
        return -1;
    }

    /** One line of counters for logs and the demo. */
    default String describe() {
        return getClass().getSimpleName();
    }
}
