package io.jvhost.core.metrics;

/**
 * One value of a {@link QueueSnapshot} or {@link DeviceSnapshot}, registry-neutral.
 *
 * @param name       the family name (a counter's without {@code _total})
 * @param label      an extra label telling members of the family apart (e.g. {@code reason}), or null
 * @param labelValue its value, or null
 * @param value      the value; for a {@link Type#TIME_COUNTER} in nanoseconds
 */
public record Sample(String name, Type type, String help, String label, String labelValue, long value) {
    /**
     * {@code TIME_COUNTER}: a counter of time whose name ends in {@code _seconds}, kept in
     * nanoseconds (exact, and what the data path counts) and exposed in seconds.
     */
    public enum Type { COUNTER, GAUGE, TIME_COUNTER }

    /** Whether it only grows: a counter of events or of time. */
    public boolean isCounter() {
        return type != Type.GAUGE;
    }

    /** The value in the unit its name says: seconds for a time counter, else as counted. */
    public double exposedValue() {
        return type == Type.TIME_COUNTER ? value / 1e9 : value;
    }
}
