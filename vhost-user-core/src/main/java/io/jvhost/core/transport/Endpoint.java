package io.jvhost.core.transport;

/** A vhost-user socket a backend serves, in server or client mode. */
public interface Endpoint extends AutoCloseable {
    /** How many frontend connections have been established so far. */
    long connections();

    /**
     * Drops the current frontend connection, if there is one, exactly as when the frontend goes
     * away: the session ends and releases everything it held, then a client connects again and a
     * server accepts the next frontend. The frontend sees the socket close. Returns once the drop
     * has started; false if no frontend was connected. Any thread but the control thread.
     */
    boolean disconnect(String reason);

    @Override
    void close();
}
