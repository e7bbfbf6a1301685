package io.jvhost.cli;

import io.jvhost.core.sys.UnixSockets;
import io.jvhost.testkit.frontend.Frontend;

import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Who may connect to a backend's socket. The socket is created owner-only (0600) whatever the
 * umask; {@code --socket-mode} and {@code --socket-group} let a frontend running as another user
 * in (libvirt's qemu user); {@code --allow-uid} refuses, with a logged line, every peer whose uid
 * (SO_PEERCRED) is not listed, and the backend keeps listening. The other user is a real one,
 * {@code jvhost-test-peer}, created for the test when it runs as root and removed afterwards; its
 * client is perl's IO::Socket::UNIX (perl-base, on every Debian), run through setpriv.
 */
@Timeout(value = 3, unit = TimeUnit.MINUTES)
class SocketAccessTest {
    static final String PEER = "jvhost-test-peer";
    /**
     * Connects to ARGV[0] and sends GET_FEATURES; prints "reply N" (bytes of the answer), "closed"
     * (the backend hung up without one) or "connect failed: ERROR".
     */
    static final String CLIENT = """
            use IO::Socket::UNIX; use Socket;
            alarm 20; $SIG{PIPE} = 'IGNORE';  # refused before its write: that write fails, the read sees the close
            my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $ARGV[0]) or do { print "connect failed: $!\\n"; exit 0 };
            syswrite($s, pack("VVV", 1, 1, 0));
            my $n = sysread($s, my $buf, 20);
            print defined($n) && $n > 0 ? "reply $n\\n" : "closed\\n";
            """;
    private static boolean createdPeer;
    private static int peerUid = -1, peerGid = -1;

    @TempDir
    Path dir;

    @BeforeAll
    static void peerUser() throws Exception {
        if (!"root".equals(System.getProperty("user.name"))) {
            return; // the uid check is still tested, with a list that leaves this user out
        }
        createdPeer = true; // a leftover of a killed run is removed at the end too: the name is this test's
        if (UnixSockets.uidOf(PEER) < 0) {
            Process add = new ProcessBuilder("useradd", "--system", "--no-create-home", "--user-group", "--shell",
                    "/usr/sbin/nologin", PEER).redirectErrorStream(true).start();
            String out = new String(add.getInputStream().readAllBytes());
            if (add.waitFor() != 0) {
                System.err.println("SKIPPED the second-user checks: useradd " + PEER + " failed: " + out);
                createdPeer = false;
                return;
            }
        }
        peerUid = UnixSockets.uidOf(PEER);
        peerGid = Integer.parseInt(run("id", "-g", PEER).strip());
    }

    @AfterAll
    static void removePeer() throws Exception {
        if (createdPeer) {
            run("userdel", PEER);
        }
    }

    @BeforeEach
    void reachable() throws Exception {
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x")); // the peer may look in
    }

    private static String run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), String.join(" ", cmd) + ":\n" + out);
        return out;
    }

    /** What the peer user's client makes of {@code socket}. */
    private static String connectAsPeer(Path socket) throws Exception {
        return run("setpriv", "--reuid=" + peerUid, "--regid=" + peerGid, "--clear-groups", "perl", "-e", CLIENT,
                socket.toString()).strip();
    }

    private CliProcess rng(Path socket, String umask, String... options) throws Exception {
        List<String> args = new ArrayList<>(List.of("rng", "--socket", socket.toString()));
        args.addAll(List.of(options));
        // The umask is the launching shell's, as in real life.
        List<String> shell = List.of("sh", "-c", "umask " + umask + "; exec \"$@\"", "sh");
        return CliProcess.start(dir, shell, Map.of(), args.toArray(String[]::new)).await(CliProcess.READY, Duration.ofSeconds(30));
    }

    private static int mode(Path socket) throws Exception {
        return (Integer) Files.getAttribute(socket, "unix:mode", LinkOption.NOFOLLOW_LINKS) & 0777;
    }

    @Test
    void shouldCreateTheSocketOwnerOnlyWhateverTheUmask() throws Exception {
        Path socket = dir.resolve("rng.sock");
        try (CliProcess p = rng(socket, "000")) {
            assertEquals(0600, mode(socket), "owner-only under umask 000");
            if (peerUid >= 0) {
                assertEquals("connect failed: Permission denied", connectAsPeer(socket));
            }
            try (Frontend fe = Frontend.connect(socket, 10_000)) {
                assertTrue(fe.getFeatures() != 0, "the owner is served");
            }
        }
    }

    @Test
    void shouldLetAnotherUsersFrontendInThroughTheSocketGroup() throws Exception {
        assumeTrue(peerUid >= 0, "SKIPPED: needs root to create user " + PEER);
        Path socket = dir.resolve("rng.sock");
        try (CliProcess p = rng(socket, "077", "--socket-group", PEER)) {
            assertEquals(0660, mode(socket), "--socket-group alone means 0660");
            assertEquals(peerGid, (Integer) Files.getAttribute(socket, "unix:gid", LinkOption.NOFOLLOW_LINKS));
            // setpriv --clear-groups leaves the peer its primary group only: that is the socket's.
            assertEquals("reply 20", connectAsPeer(socket), "GET_FEATURES answered: 12-byte header and a u64");
        }
        try (CliProcess p = rng(socket, "022", "--socket-mode", "0666")) {
            assertEquals(0666, mode(socket));
        }
    }

    @Test
    void shouldRefuseAndLogAPeerWhoseUidIsNotAllowedAndKeepServingTheOthers() throws Exception {
        Path socket = dir.resolve("rng.sock");
        int self = Integer.parseInt(run("id", "-u").strip());
        if (peerUid >= 0) {
            try (CliProcess p = rng(socket, "022", "--socket-mode", "0666", "--allow-uid", "root")) {
                assertEquals("closed", connectAsPeer(socket), "closed without an answer");
                p.await("refused a connection on " + socket + " from uid " + peerUid, Duration.ofSeconds(10));
                try (Frontend fe = Frontend.connect(socket, 10_000)) {
                    assertTrue(fe.getFeatures() != 0, "an allowed peer is served after the refused one");
                }
                assertTrue(p.process.isAlive());
            }
        }
        // The check with a list that leaves out this test's own user: refused too, and logged.
        int other = self == 0 ? 4242 : 0;
        try (CliProcess p = rng(socket, "022", "--allow-uid", String.valueOf(other))) {
            try (Frontend fe = Frontend.connect(socket, 10_000)) {
                assertTrue(fe.isClosedByBackend(10_000), "refused: closed without an answer");
            }
            p.await("refused a connection on " + socket + " from uid " + self, Duration.ofSeconds(10));
            assertTrue(p.process.isAlive(), "still listening");
        }
    }
}
