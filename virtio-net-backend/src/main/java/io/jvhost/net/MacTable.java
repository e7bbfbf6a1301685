package io.jvhost.net;

import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.LongSupplier;

/**
 * A forwarding table from unicast MACs to a small number (a port, a remote), with ageing: open
 * addressing over atomic arrays, so learning and lookups never lock or allocate, from any number
 * of threads at once. A crowded neighbourhood (16 probes) leaves a MAC unknown, which floods.
 */
final class MacTable {
    private static final int MAX_PROBES = 16;
    private static final long TIME_MASK = 0xFFFF_FFFF_FFFFL;

    private final int size;
    private final AtomicLongArray keys;   // MAC + 1, 0 = free
    private final AtomicLongArray values; // value << 48 | seen (ms)
    private final long ageingMillis;
    private final LongSupplier clock;

    /**
     * @param size  slots, a power of two
     * @param clock milliseconds; injected so tests can age entries without waiting
     */
    MacTable(int size, long ageingMillis, LongSupplier clock) {
        if (Integer.bitCount(size) != 1) {
            throw new IllegalArgumentException("table size must be a power of two: " + size);
        }
        this.size = size;
        this.keys = new AtomicLongArray(size);
        this.values = new AtomicLongArray(size);
        this.ageingMillis = ageingMillis;
        this.clock = clock;
    }

    private int slot(long mac) {
        long h = mac * 0x9E37_79B9_7F4A_7C15L;
        return (int) (h >>> 40) & (size - 1);
    }

    /**
     * Records that {@code mac} is behind {@code value} (0..32767), now. Returns the value it had
     * before, -1 when it was new (or aged out: that counts as moved only if the value differs).
     * Group MACs are never learnt. Any thread.
     */
    int learn(long mac, int value) {
        if (Frames.isGroup(mac)) {
            return -1;
        }
        long key = mac + 1, entry = (long) value << 48 | (clock.getAsLong() & TIME_MASK);
        int s = slot(mac);
        for (int i = 0; i < MAX_PROBES; i++, s = (s + 1) & (size - 1)) {
            long k = keys.get(s);
            if (k == key || (k == 0 && keys.compareAndSet(s, 0, key)) || keys.get(s) == key) {
                long old = values.getAndSet(s, entry);
                return old == 0 ? -1 : (int) (old >>> 48);
            }
        }
        return -1; // crowded around this slot: the MAC stays unknown and its frames flood
    }

    /** The value behind {@code mac}, or -1 when unknown or aged out. Any thread. */
    int lookup(long mac) {
        long key = mac + 1;
        int s = slot(mac);
        for (int i = 0; i < MAX_PROBES; i++, s = (s + 1) & (size - 1)) {
            long k = keys.get(s);
            if (k == 0) {
                return -1;
            }
            if (k == key) {
                long v = values.get(s);
                long seen = v & TIME_MASK;
                return (clock.getAsLong() & TIME_MASK) - seen > ageingMillis ? -1 : (int) (v >>> 48);
            }
        }
        return -1;
    }
}
