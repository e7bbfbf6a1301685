package io.jvhost.cli.options;

import java.util.BitSet;

import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * Which queues each poller thread serves, from {@code --queue-map 0,1:2,3}: pollers separated by
 * colons, queue indices within a poller by commas; every queue at most once.
 *
 * @param pollers queue indices per poller, as {@code BackendOptions.queueSets()} takes them
 */
public record QueueMap(int[][] pollers) {

    /**
     * Why this map does not fit a device of {@code queueCount} queues (a queue it names does not
     * exist, or one it leaves out), or null when it fits.
     */
    public String problem(int queueCount) {
        java.util.BitSet mapped = new java.util.BitSet();
        for (int[] set : pollers) {
            for (int q : set) {
                if (q >= queueCount) {
                    return "queue " + q + " does not exist: the queues are 0.." + (queueCount - 1);
                }
                mapped.set(q);
            }
        }
        int missing = mapped.nextClearBit(0);
        return missing < queueCount ? "queue " + missing + " has no poller: map every queue 0.." + (queueCount - 1) : null;
    }

    /** picocli's converter for {@code --queue-map}; a bad map reads {@code Invalid value for option '--queue-map': ...}. */
    public static final class Converter implements ITypeConverter<QueueMap> {
        @Override
        public QueueMap convert(String value) {
            String[] sets = value.split(":", -1);
            int[][] pollers = new int[sets.length][];
            BitSet seen = new BitSet();
            for (int p = 0; p < sets.length; p++) {
                String[] queues = sets[p].split(",", -1);
                pollers[p] = new int[queues.length];
                for (int i = 0; i < queues.length; i++) {
                    String q = queues[i].strip();
                    if (q.isEmpty() || q.length() > 5 || !q.chars().allMatch(Character::isDigit)) {
                        throw new TypeConversionException("'" + value + "': '" + q
                                + "' is not a queue index; write queue indices per poller, e.g. 0,1:2,3");
                    }
                    int queue = Integer.parseInt(q);
                    if (seen.get(queue)) {
                        throw new TypeConversionException("'" + value + "': queue " + queue + " is mapped twice");
                    }
                    seen.set(queue);
                    pollers[p][i] = queue;
                }
            }
            return new QueueMap(pollers);
        }
    }
}
