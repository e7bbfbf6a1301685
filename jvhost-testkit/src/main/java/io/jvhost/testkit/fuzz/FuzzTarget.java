package io.jvhost.testkit.fuzz;

/**
 * One thing to fuzz: decodes an input (see {@link FuzzInput}) into what a hostile guest or frontend
 * would do, does it to a real device or queue, and throws when the device misbehaved: an exception
 * escaped a poller or the parser, the backend stopped serving, something touched memory outside
 * the guest's, or a request never completed. Inputs run one after another on one set-up target.
 * Test thread only.
 */
public interface FuzzTarget extends AutoCloseable {
    /** The name on the command line and of the corpus directory: messages, chains, blk, net. */
    public String name();

    /** The longest input worth generating. */
    public int maxLength();

    /** Runs one input; records what it reached in {@code features}; throws on a failure. */
    public void run(byte[] input, Features features) throws Exception;

    /** Starts over with a fresh device after a failure, so the next input is judged on its own. */
    public void reset() throws Exception;

    @Override
    public void close() throws Exception;
}
