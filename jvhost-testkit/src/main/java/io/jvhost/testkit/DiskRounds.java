package io.jvhost.testkit;

import java.nio.charset.StandardCharsets;
import java.util.Base64;

/**
 * A writer for a guest's {@code /dev/vda} that rewrites its first bytes round after round, each
 * round with a pattern of its own ({@code "jvhost round=N\n"} repeated), in 4 KiB O_DIRECT writes,
 * so that the guest nearly always waits on the disk and a write lost across a crash, a reconnect
 * or a migration shows in the final contents. Files in the guest: {@code /tmp/stop} ends it,
 * {@code /tmp/errors} collects failed rounds, {@code /tmp/progress} and {@code /tmp/finished} hold
 * the latest and the last round.
 */
public final class DiskRounds {
    private DiskRounds() {
    }

    /** One line of shell that starts the writer in the guest's background (the script travels base64). */
    public static String startCommand(int bytes) {
        String script = "r=0\nwhile [ ! -f /tmp/stop ]; do r=$((r+1))\n"
                + " yes \"jvhost round=$r\" | head -c " + bytes + " > /tmp/round\n"
                + " dd if=/tmp/round of=/dev/vda bs=4096 oflag=direct 2>/dev/null || echo FAIL$r >> /tmp/errors\n"
                + " echo $r > /tmp/progress\n"
                + "done\nsync\necho $r > /tmp/finished\n";
        return "echo " + Base64.getEncoder().encodeToString(script.getBytes(StandardCharsets.US_ASCII))
                + " | base64 -d > /tmp/w.sh && (sh /tmp/w.sh > /dev/null 2>&1 &)";
    }

    /** The first {@code bytes} of the disk after round {@code round}. */
    public static byte[] expected(int round, int bytes) {
        byte[] line = ("jvhost round=" + round + "\n").getBytes(StandardCharsets.US_ASCII);
        byte[] out = new byte[bytes];
        for (int i = 0; i < bytes; i++) {
            out[i] = line[i % line.length];
        }
        return out;
    }
}
