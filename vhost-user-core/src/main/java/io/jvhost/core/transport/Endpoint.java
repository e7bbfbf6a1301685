package io.jvhost.core.transport;

/** A vhost-user socket a backend serves, in server or client mode. */
public interface Endpoint extends AutoCloseable {
    /** How many frontend connections have been established so far. */
    long connections();

    @Override
    void close();
}
