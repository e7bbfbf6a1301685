package io.jvhost.cli;

import io.jvhost.testkit.frontend.Frontend;

import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every bad option and environment problem of the real CLI ends in one line on stderr naming the
 * command, what is wrong and what to do, with exit code 2 for usage errors (and a pointer to the
 * command's --help, not the whole usage text) or 1 for the machine's problems, and no stack trace
 * unless --debug is given.
 */
@Timeout(value = 5, unit = TimeUnit.MINUTES)
class CliErrorsTest {
    static final int USAGE = 2, RUNTIME = 1;

    @TempDir
    Path dir;

    /** {@code exit}, the command's name, the arguments ({dir} is the test's directory) and a piece of the line. */
    static Stream<Arguments> cases() {
        String longSocket = "{dir}/" + "s".repeat(110) + ".sock";
        return Stream.of(
            // usage errors: bad values, unknown options, malformed numbers
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 1Q", "Invalid value for option '--ram': '1Q' is not a size"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 0", "'0' is not a positive multiple of 512 bytes"),
            Arguments.of(USAGE, "jvhost rng", "rng --socket {dir}/r.sock --client --handover {dir}/h.sock",
                    "--handover works with a socket jvhost listens on, not with --client"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --null 1Q", "Invalid value for option '--null': '1Q' is not a size"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --null 1000", "Invalid value for option '--null': '1000' is not a positive multiple of 512 bytes"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --null 99999999999T", "Invalid value for option '--null': '99999999999T' is too large"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --null 1G --ram 1G", "are mutually exclusive"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 1M --queues 0", "--queues must be 1..64 (one per guest vCPU), got 0"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 1M --queues 65", "--queues must be 1..64 (one per guest vCPU), got 65"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 1M --queues two", "Invalid value for option '--queues': 'two' is not an int"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 1M --io-workers 0", "--io-workers must be 1..1024"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 1M --queue-map 0,5", "--queue-map: queue 5 does not exist: the queues are 0..0"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 1M --queues 2 --queue-map 0", "--queue-map: queue 1 has no poller"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 1M --queue-map 0,,1", "'0,,1': '' is not a queue index"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock --ram 1M --quues 2", "Unknown options: '--quues', '2'; did you mean --queue"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket {dir}/b.sock", "Missing required argument (specify one of these): (--file=IMAGE"),
            Arguments.of(USAGE, "jvhost blk", "blk --socket " + longSocket + " --ram 1M", "bytes long; a Unix socket path holds at most 107"),
            Arguments.of(USAGE, "jvhost net", "net --socket {dir}/n.sock --tap tap-name-of-16ch", "--tap tap-name-of-16ch: an interface name is 1..15"),
            Arguments.of(USAGE, "jvhost net", "net --socket {dir}/n.sock --socket {dir}/m.sock --tap tap-name-of-15c", "('tap-name-of-15c1' is 16)"),
            Arguments.of(USAGE, "jvhost net", "net --socket {dir}/n.sock --drop --queues 0", "--queues must be 1..64 (queue pairs per NIC), got 0"),
            Arguments.of(USAGE, "jvhost net", "net --socket {dir}/n.sock --drop --queues 1000", "--queues must be 1..64 (queue pairs per NIC), got 1000"),
            Arguments.of(USAGE, "jvhost net", "net --socket {dir}/n.sock --drop --mac 52:54:zz:00:00:01", "--mac 52:54:zz:00:00:01 is not a MAC address"),
            Arguments.of(USAGE, "jvhost net", "net --socket {dir}/n.sock --drop --mtu 10", "--mtu must be 68..65517"),
            Arguments.of(USAGE, "jvhost net", "net --socket {dir}/n.sock --generate 10", "--generate must be 60..65535"),
            Arguments.of(USAGE, "jvhost rng", "rng --socket {dir}/r.sock --socket-mode 0999", "'0999' is not a file mode"),
            Arguments.of(USAGE, "jvhost rng", "rng --socket {dir}/r.sock --socket-group no-such-group-jvhost", "--socket-group no-such-group-jvhost: no such group"),
            Arguments.of(USAGE, "jvhost rng", "rng --socket {dir}/r.sock --allow-uid no-such-user-jvhost", "'no-such-user-jvhost' is neither a uid nor a user"),
            Arguments.of(USAGE, "jvhost rng", "rng --socket {dir}/r.sock --coalesce-frames -1", "--coalesce-frames must be 0..65536"),
            Arguments.of(USAGE, "jvhost rng", "rng --socket {dir}/r.sock --coalesce-frames 8 --coalesce-usecs 2000000", "--coalesce-usecs 0..1000000"),
            Arguments.of(USAGE, "jvhost rng", "rng --socket {dir}/r.sock --busy-poll --idle event", "contradict each other"),
            Arguments.of(USAGE, "jvhost rng", "rng --socket {dir}/r.sock --client --socket-mode 0660", "with --client the frontend's socket is used"),
            Arguments.of(USAGE, "jvhost rng", "rng", "Missing required option: '--socket=PATH'"),
            Arguments.of(USAGE, "jvhost bench net", "bench net --sizes big", "Invalid value for option '--sizes'"),
            Arguments.of(USAGE, "jvhost bench blk", "bench blk --targets qsd,jvhost-nul", "--targets: no jvhost-nul; give some of jvhost-ram,"),
            Arguments.of(USAGE, "jvhost bench blk", "bench blk --idle fast", "--idle fast: the modes are adaptive, event and busy"),
            Arguments.of(USAGE, "jvhost bench tcp", "bench tcp --idle spin", "--idle spin: the modes are adaptive, event and busy"),
            Arguments.of(USAGE, "jvhost bench net", "bench net --backends jvhost,dpdk", "--backends: no jvhost; give some of jvhost-adaptive, jvhost-busy, jvhost-event, dpdk, dpdk-nohuge"),
            Arguments.of(USAGE, "jvhost", "blkk --socket {dir}/b.sock", "unknown command 'blkk'; did you mean blk?"),
            // the machine's problems
            Arguments.of(RUNTIME, "jvhost blk", "blk --socket {dir}/b.sock --file {dir}/missing.img", "--file {dir}/missing.img: no such file (create an image: truncate -s 10G"),
            Arguments.of(RUNTIME, "jvhost blk", "blk --socket {dir}/b.sock --file {dir}", "--file {dir} is a directory; give a raw image file or a block device"),
            Arguments.of(RUNTIME, "jvhost blk", "blk --socket {dir}/nodir/b.sock --ram 1M", "directory {dir}/nodir does not exist (create it: mkdir -p {dir}/nodir)"),
            Arguments.of(RUNTIME, "jvhost bench blk", "bench blk --targets jvhost-null,spdk-null", "needs SPDK's vhost target for spdk-null (--spdk PATH: SPDK's build/bin/vhost or its tree; scripts/build-spdk.sh builds one)"),
            Arguments.of(RUNTIME, "jvhost bench blk", "bench blk --targets spdk-null --spdk {dir}", "needs SPDK's vhost target at {dir}/build/bin/vhost (not an executable file;"),
            Arguments.of(RUNTIME, "jvhost rng", "rng --socket {dir}", "--socket {dir} is a directory; give the path of the socket to create in it"),
            Arguments.of(RUNTIME, "jvhost rng", "rng --socket {dir}/r.sock --handover {dir}/nodir/h.sock",
                    "--handover {dir}/nodir/h.sock: directory {dir}/nodir does not exist (create it: mkdir -p {dir}/nodir)"),
            Arguments.of(RUNTIME, "jvhost rng", "rng --socket {dir}/plain-file", "exists and is not a socket; jvhost will not replace it"));
    }

    @ParameterizedTest(name = "[{index}] exit {0}: {2}")
    @MethodSource("cases")
    void shouldPrintOneLineSayingWhatIsWrongAndExitWithUsageOrRuntimeCode(int exit, String command, String args,
                                                                          String expected) throws Exception {
        Files.writeString(dir.resolve("plain-file"), "not a socket");
        CliProcess.Outcome o = CliProcess.run(dir, args.replace("{dir}", dir.toString()).split(" "));
        String line = o.line(command);
        assertEquals(exit, o.exit(), line);
        assertTrue(line.contains(expected.replace("{dir}", dir.toString())), line);
        String help = " (see ./" + command + " --help)";
        assertEquals(exit == USAGE, line.endsWith(help), "a usage error, and only one, points to the help: " + line);
    }

    @Test
    void shouldPrintOneLineWhenNotPermittedToOpenTheTap() throws Exception {
        // Without CAP_NET_ADMIN (dropped from a root process's bounding set; a user lacks it anyway).
        List<String> prefix = "root".equals(System.getProperty("user.name"))
                ? List.of("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin") : List.of();
        CliProcess.Outcome o = CliProcess.run(dir, prefix, "net", "--socket", dir.resolve("n.sock").toString(), "--tap", "jvhost-perm0");
        String line = o.line("jvhost net");
        assertEquals(RUNTIME, o.exit(), line);
        assertTrue(line.contains("--tap jvhost-perm0: not permitted to create or attach it (needs CAP_NET_ADMIN: run as root, or"
                + " have root create it for this user first: ip tuntap add jvhost-perm0 mode tap user"), line);
    }

    @Test
    void shouldPrintTheStackTraceToOnlyWithDebug() throws Exception {
        CliProcess.Outcome o = CliProcess.run(dir, "blk", "--socket", dir.resolve("b.sock").toString(),
                "--file", dir.resolve("missing.img").toString(), "--debug");
        assertEquals(RUNTIME, o.exit(), o.stderr());
        List<String> lines = o.stderr().lines().toList();
        assertTrue(lines.get(0).startsWith("jvhost blk: --file " + dir.resolve("missing.img") + ": no such file"), o.stderr());
        assertTrue(o.stderr().contains("\tat io.jvhost.cli.blk.BlkCommand"), o.stderr());
    }

    @Test
    void shouldRefuseASocketALiveBackendListensOnAndLeaveThatBackendServing() throws Exception {
        Path socket = dir.resolve("live.sock");
        try (CliProcess live = CliProcess.start(dir, List.of(), java.util.Map.of(), "rng", "--socket", socket.toString())
                .await(CliProcess.READY, Duration.ofSeconds(30))) {
            CliProcess.Outcome second = CliProcess.run(dir, "rng", "--socket", socket.toString());
            String line = second.line("jvhost rng");
            assertEquals(RUNTIME, second.exit(), line);
            assertEquals("jvhost rng: --socket " + socket + " is in use: a running backend (pid " + live.process.pid()
                    + ") listens on it; stop that one or choose another path", line);
            assertTrue(live.process.isAlive(), "the live backend keeps running");
            try (Frontend fe = Frontend.connect(socket, 10_000)) {
                assertTrue((fe.getFeatures() & 1L << 32) != 0, "the live backend still answers (VERSION_1 offered)");
            }
        }
    }

    @Test
    void shouldReplaceAStaleSocketFileOfADeadProcess() throws Exception {
        Path socket = dir.resolve("stale.sock");
        try (ServerSocketChannel dead = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            dead.bind(UnixDomainSocketAddress.of(socket)); // closing leaves the file behind, as a killed process does
        }
        assertTrue(Files.exists(socket));
        try (CliProcess p = CliProcess.start(dir, List.of(), java.util.Map.of(), "rng", "--socket", socket.toString())
                .await(CliProcess.READY, Duration.ofSeconds(30));
             Frontend fe = Frontend.connect(socket, 10_000)) {
            assertTrue((fe.getFeatures() & 1L << 32) != 0, "served on the replaced socket");
            assertTrue(p.output().contains("removing stale socket " + socket), p.output());
        }
    }
}
