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
     * A frame the guest sent on queue pair {@code pair}, without the virtio-net header. The segment
     * is a view of guest memory (or a scratch copy when the frame was scattered) valid only during
     * the call: copy what you keep.
     */
    void onFrame(GuestNic nic, int pair, MemorySegment frame);

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
