package io.jvhost.core.metrics;

/**
 * One value of a {@link QueueSnapshot} or {@link DeviceSnapshot}, registry-neutral.
 *
 * @param name       the family name (a counter's without {@code _total})
 * @param label      an extra label telling members of the family apart (e.g. {@code reason}), or null
 * @param labelValue its value, or null
 */
public record Sample(String name, Type type, String help, String label, String labelValue, long value) {
    public enum Type { COUNTER, GAUGE }
}
