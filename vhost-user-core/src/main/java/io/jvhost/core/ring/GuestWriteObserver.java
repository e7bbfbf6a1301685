package io.jvhost.core.ring;

/**
 * Test hook: told every guest-physical range a queue's device may write while a dirty log is in
 * force (live migration): the writable buffers of every chain it takes and the ring areas it writes
 * (split: the used ring; packed: the descriptor ring and the device event area). Found from the
 * chains and ring addresses themselves, not from the dirty-log marking, so that a test can tell a
 * page the backend wrote from one it did not, and catch a lost dirty bit. Off unless installed
 * with {@link #install}; costs nothing while no dirty log is in force. Called on poller threads (and
 * the control thread); must be thread-safe.
 */
@FunctionalInterface
public interface GuestWriteObserver {
    void mayWrite(long gpa, long length);

    /** Installs {@code observer} for every queue, or with null removes it. For tests only; any thread. */
    static void install(GuestWriteObserver observer) {
        GuestWrites.observer(observer);
    }
}
