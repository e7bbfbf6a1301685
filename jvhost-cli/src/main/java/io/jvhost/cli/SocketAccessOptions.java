package io.jvhost.cli;

import io.jvhost.core.sys.UnixSockets;
import io.jvhost.core.transport.SocketAccess;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.GroupPrincipal;
import java.nio.file.attribute.UserPrincipalNotFoundException;
import java.util.List;

import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.TypeConversionException;

/**
 * Who may connect to the sockets a device listens on ({@code --socket-mode}, {@code --socket-group},
 * {@code --allow-uid}), and the checks of each {@code --socket} path made before anything starts, so
 * that a bad path is one line saying what to do.
 */
public final class SocketAccessOptions {
    private static final int S_IFMT = 0170000, S_IFSOCK = 0140000;

    @Option(names = "--socket-mode", paramLabel = "MODE", converter = OctalMode.class,
            description = "Permissions of the socket file, octal (default 0600: only this user; 0660 with --socket-group).")
    Integer mode;

    @Option(names = "--socket-group", paramLabel = "GROUP",
            description = "Give the socket file to GROUP (name or gid), e.g. the group libvirt's QEMU runs as.")
    String group;

    @Option(names = "--allow-uid", paramLabel = "LIST", split = ",",
            description = "Serve only peers running as these users (uids or names, comma-separated), checked with SO_PEERCRED; others are refused and logged.")
    List<String> allowUids;

    /** {@code --socket-mode}: three or four octal digits, at most 0777. */
    public static final class OctalMode implements ITypeConverter<Integer> {
        @Override
        public Integer convert(String value) {
            String v = value.strip();
            if (!v.matches("[0-7]{1,4}") || Integer.parseInt(v, 8) > 0777) {
                throw new TypeConversionException("'" + value + "' is not a file mode: octal permission bits such as 0600 or 0660");
            }
            return Integer.parseInt(v, 8);
        }
    }

    /** The access these options ask for: owner-only (0600) unless told otherwise; 0660 with a group. */
    SocketAccess access(CommandSpec command, boolean client) {
        if (client && (mode != null || group != null || allowUids != null)) {
            throw new ParameterException(command.commandLine(), "--socket-mode, --socket-group and --allow-uid are for a socket"
                    + " jvhost listens on; with --client the frontend's socket is used");
        }
        GroupPrincipal owner = null;
        if (group != null) {
            try {
                owner = FileSystems.getDefault().getUserPrincipalLookupService().lookupPrincipalByGroupName(group);
            } catch (UserPrincipalNotFoundException e) {
                throw new ParameterException(command.commandLine(), "--socket-group " + group + ": no such group (see getent group)");
            } catch (IOException e) {
                throw new Failure("--socket-group " + group + ": " + e.getMessage(), e);
            }
        }
        int[] uids = null;
        if (allowUids != null) {
            uids = new int[allowUids.size()];
            for (int i = 0; i < uids.length; i++) {
                String u = allowUids.get(i).strip();
                uids[i] = u.matches("[0-9]{1,10}") && Long.parseLong(u) <= Integer.MAX_VALUE ? Integer.parseInt(u)
                        : u.isEmpty() ? -1 : UnixSockets.uidOf(u);
                if (uids[i] < 0) {
                    throw new ParameterException(command.commandLine(),
                            "--allow-uid: '" + u + "' is neither a uid nor a user (write uids or user names, comma-separated)");
                }
            }
        }
        return new SocketAccess(mode != null ? mode : owner != null ? 0660 : 0600, owner, uids);
    }

    /** Refuses (as a usage error) a socket path longer than a Unix socket address holds. */
    static void checkLengths(CommandSpec command, List<Path> sockets) {
        for (Path socket : sockets) {
            int bytes = socket.toString().getBytes(StandardCharsets.UTF_8).length;
            if (bytes > UnixSockets.MAX_PATH_BYTES) {
                throw new ParameterException(command.commandLine(), "--socket " + socket + " is " + bytes
                        + " bytes long; a Unix socket path holds at most " + UnixSockets.MAX_PATH_BYTES
                        + (socket.getFileName().toString().length() < 60 ? " (use a shorter one, e.g. /run/jvhost/"
                        + socket.getFileName() + ")" : " (use a shorter one)"));
            }
        }
    }

    /**
     * Checks that a socket can be created (or, with {@code client}, named) at each path, throwing
     * a usage error for a path no socket can have and a {@link Failure} for the machine's reasons.
     * A stale socket file (nobody listens) passes: the server replaces it.
     */
    static void checkPaths(CommandSpec command, List<Path> sockets, boolean client) {
        checkPaths(command, "--socket", sockets, client);
    }

    /** As {@link #checkPaths(CommandSpec, List, boolean)} for the sockets of {@code option}. */
    static void checkPaths(CommandSpec command, String option, List<Path> sockets, boolean client) {
        checkLengths(command, sockets);
        for (Path socket : sockets) {
            if (client) {
                continue; // the frontend creates it, maybe later: the client waits for it
            }
            Path dir = socket.toAbsolutePath().getParent();
            if (!Files.exists(dir)) {
                throw new Failure(option + " " + socket + ": directory " + dir + " does not exist (create it: mkdir -p " + dir + ")");
            }
            if (!Files.isDirectory(dir)) {
                throw new Failure(option + " " + socket + ": " + dir + " is not a directory");
            }
            if (Files.exists(socket, LinkOption.NOFOLLOW_LINKS)) {
                int fileMode;
                try {
                    fileMode = (Integer) Files.getAttribute(socket, "unix:mode", LinkOption.NOFOLLOW_LINKS);
                } catch (IOException e) {
                    throw new Failure(option + " " + socket + ": " + e.getMessage(), e);
                }
                if ((fileMode & S_IFMT) != S_IFSOCK) {
                    throw new Failure(option + " " + socket + (Files.isDirectory(socket, LinkOption.NOFOLLOW_LINKS)
                            ? " is a directory; give the path of the socket to create in it"
                            : " exists and is not a socket; jvhost will not replace it (remove it or choose another path)"));
                }
                UnixSockets.PeerCredentials owner = UnixSockets.listener(socket);
                if (owner != null || UnixSockets.isListening(socket)) {
                    throw new Failure(option + " " + socket + " is in use: a running backend"
                            + (owner != null ? " (pid " + owner.pid() + ")" : "") + " listens on it; stop that one or choose another path");
                }
            }
            if (!Files.isWritable(dir)) {
                throw new Failure(option + " " + socket + ": no permission to create a socket in " + dir
                        + " (run as a user who may write there, or choose another directory)");
            }
        }
    }
}
