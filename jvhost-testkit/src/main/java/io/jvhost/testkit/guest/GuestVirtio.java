package io.jvhost.testkit.guest;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * What the guest's Linux virtio drivers negotiated, as they report it in sysfs: for each device,
 * {@code /sys/bus/virtio/devices/virtioN/device} (the virtio device ID, virtio 1.2 §5) and
 * {@code features}, a string of 64 '0'/'1' characters with feature bit n at index n.
 */
public final class GuestVirtio {
    public static final int NET = 1, BLOCK = 2, ENTROPY = 4;
    /** VIRTIO_F_RING_PACKED, written out here rather than taken from the code under test. */
    public static final int RING_PACKED_BIT = 34;

    private GuestVirtio() {}

    /** The negotiated feature strings of every virtio device of {@code deviceType} in the guest. */
    public static List<String> features(QemuGuest g, int deviceType) {
        QemuGuest.Result r = g.exec("for d in /sys/bus/virtio/devices/*; do echo $(cat $d/device) $(cat $d/features); done",
                Duration.ofMinutes(1));
        if (r.exitStatus() != 0) {
            throw new IllegalStateException("cannot read virtio features in the guest: " + r.output());
        }
        List<String> out = new ArrayList<>();
        for (String line : r.output().lines().toList()) {
            String[] f = line.trim().split("\\s+");
            if (f.length == 2 && Integer.decode(f[0]) == deviceType) {
                out.add(f[1]);
            }
        }
        return out;
    }

    /**
     * Whether every device of {@code deviceType} (there must be one) negotiated feature {@code bit}.
     * Throws when there is none.
     */
    public static boolean negotiated(QemuGuest g, int deviceType, int bit) {
        List<String> all = features(g, deviceType);
        if (all.isEmpty()) {
            throw new IllegalStateException("no virtio device of type " + deviceType + " in the guest");
        }
        for (String f : all) {
            if (f.length() <= bit || f.charAt(bit) != '1') {
                return false;
            }
        }
        return true;
    }

    /** Whether the guest runs every device of {@code deviceType} on packed virtqueues (bit 34). */
    public static boolean ringPacked(QemuGuest g, int deviceType) {
        return negotiated(g, deviceType, RING_PACKED_BIT);
    }
}
