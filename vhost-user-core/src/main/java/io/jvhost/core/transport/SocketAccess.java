package io.jvhost.core.transport;

import java.nio.file.attribute.GroupPrincipal;
import java.util.Arrays;

/**
 * Who may use a socket jvhost listens on: the socket file's permission bits and group (so that a
 * frontend running as another user, e.g. libvirt's qemu user, can connect) and, optionally, the
 * uids a connecting peer must have (checked with SO_PEERCRED at accept; others are refused and
 * logged, and the backend keeps listening).
 *
 * @param mode        permission bits of the socket file, within 0777 (connecting needs write permission)
 * @param group       the socket file's group, or null to leave it the creating process's
 * @param allowedUids the uids allowed to connect, or null for whoever the file permissions let in
 */
public record SocketAccess(int mode, GroupPrincipal group, int[] allowedUids) {
    /** Owner only (0600), the default: only the backend's own user (and root) can connect. */
    public static final SocketAccess OWNER_ONLY = new SocketAccess(0600, null, null);

    public SocketAccess {
        if ((mode & ~0777) != 0) {
            throw new IllegalArgumentException("socket mode must be within 0777: 0" + Integer.toOctalString(mode));
        }
        allowedUids = allowedUids == null ? null : allowedUids.clone();
    }

    /** Whether a peer with {@code uid} may connect. */
    public boolean allows(int uid) {
        if (allowedUids == null) {
            return true;
        }
        for (int allowed : allowedUids) {
            if (allowed == uid) {
                return true;
            }
        }
        return false;
    }

    @Override
    public int[] allowedUids() {
        return allowedUids == null ? null : allowedUids.clone();
    }

    @Override
    public String toString() {
        return "mode 0" + Integer.toOctalString(mode) + (group == null ? "" : ", group " + group.getName())
                + (allowedUids == null ? "" : ", uids " + Arrays.toString(allowedUids));
    }
}
