package io.jvhost.core.runtime;

/**
 * Counts acknowledgements from pollers and runs an action on the control thread once all have
 * arrived and no more will be added. Control thread only.
 */
public final class Barrier {
    private final Runnable action;
    private int pending;
    private boolean sealed;
    private boolean done;

    public Barrier(Runnable action) {
        this.action = action;
    }

    /** One more acknowledgement to wait for. */
    public void expect() {
        if (sealed) {
            throw new IllegalStateException("barrier already sealed");
        }
        pending++;
    }

    /** One acknowledgement arrived. */
    public void arrive() {
        pending--;
        fireIfReady();
    }

    /** No more {@link #expect()} calls will come. */
    public void seal() {
        sealed = true;
        fireIfReady();
    }

    private void fireIfReady() {
        if (sealed && pending == 0 && !done) {
            done = true;
            action.run();
        }
    }
}
