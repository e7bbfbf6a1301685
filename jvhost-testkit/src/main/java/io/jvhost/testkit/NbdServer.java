package io.jvhost.testkit;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;



/**
 * A real NBD server in a child process for tests: {@code qemu-nbd} (package qemu-utils) on an
 * image file, or {@code nbdkit}, listening on a Unix socket or a loopback TCP port. It can be
 * killed (SIGKILL, as a crash) and started again on the same address. Also makes TLS credentials
 * with {@code openssl} in the layout QEMU's {@code tls-creds-x509} reads.
 */
public final class NbdServer implements AutoCloseable {
    private static final Duration START_TIMEOUT = Duration.ofSeconds(20);

    private final List<String> command;
    private final Path socket;
    private final int port;
    private final Path log;
    private Process process;

    private NbdServer(List<String> command, Path socket, int port, Path log) {
        this.command = command;
        this.socket = socket;
        this.port = port;
        this.log = log;
    }

    /**
     * Returns only if qemu-nbd, nbdkit and openssl are installed. On CI (environment variable CI
     * set) a missing one fails the test, since .ci/run installs them; locally the test is skipped
     * with a banner.
     */
    public static void require() {
        List<String> missing = new ArrayList<>();
        if (!Files.isExecutable(Path.of("/usr/bin/qemu-nbd"))) {
            missing.add("qemu-utils");
        }
        if (!Files.isExecutable(Path.of("/usr/bin/nbdkit"))) {
            missing.add("nbdkit");
        }
        if (!Files.isExecutable(Path.of("/usr/bin/openssl"))) {
            missing.add("openssl");
        }
        if (missing.isEmpty()) {
            return;
        }
        HostPackages.missing("NBD tests", missing, "apt-get install " + String.join(" ", missing));
    }

    /** qemu-nbd exporting the raw {@code image} as {@code export} on Unix socket {@code socket}. */
    public static NbdServer qemuNbdUnix(Path image, Path socket, String export, String... extra) throws IOException {
        List<String> cmd = qemuNbd(image, export, extra);
        cmd.add(cmd.size() - 1, "--socket=" + socket);
        return start(cmd, socket, 0);
    }

    /** qemu-nbd exporting the raw {@code image} as {@code export} on 127.0.0.1:{@code port} (0: a free one). */
    public static NbdServer qemuNbdTcp(Path image, int port, String export, String... extra) throws IOException {
        int p = port == 0 ? freePort() : port;
        List<String> cmd = qemuNbd(image, export, extra);
        cmd.addAll(cmd.size() - 1, List.of("--bind=127.0.0.1", "--port=" + p));
        return start(cmd, null, p);
    }

    /** {@code nbdkit [args]} in the foreground on Unix socket {@code socket}; args name filters and the plugin. */
    public static NbdServer nbdkitUnix(Path socket, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("nbdkit", "--foreground", "--exit-with-parent", "--unix=" + socket));
        cmd.addAll(List.of(args));
        return start(cmd, socket, 0);
    }

    /** {@code nbdkit [args]} in the foreground on 127.0.0.1:{@code port}. */
    public static NbdServer nbdkitTcp(int port, String... args) throws IOException {
        List<String> cmd = new ArrayList<>(List.of("nbdkit", "--foreground", "--exit-with-parent", "--ipaddr=127.0.0.1",
                "--port=" + port));
        cmd.addAll(List.of(args));
        return start(cmd, null, port);
    }

    private static List<String> qemuNbd(Path image, String export, String... extra) {
        List<String> cmd = new ArrayList<>(List.of("qemu-nbd", "--format=raw", "--persistent", "--shared=16",
                "--export-name=" + export));
        cmd.addAll(List.of(extra));
        cmd.add(image.toString());
        return cmd;
    }

    private static NbdServer start(List<String> cmd, Path socket, int port) throws IOException {
        Path log = Files.createTempFile("jvhost-nbd-server", ".log");
        NbdServer s = new NbdServer(List.copyOf(cmd), socket, port, log);
        s.start();
        return s;
    }

    /** Starts the server (again, after {@link #kill}) and waits until it takes connections. */
    public synchronized void start() throws IOException {
        if (process != null && process.isAlive()) {
            throw new IllegalStateException("already running");
        }
        if (socket != null) {
            Files.deleteIfExists(socket);
        }
        process = new ProcessBuilder(command).redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
        while (!listening()) {
            if (!process.isAlive()) {
                throw new IOException("NBD server exited with " + process.exitValue() + ": " + command + "\n" + output());
            }
            if (System.nanoTime() > deadline) {
                throw new IOException("NBD server not listening after " + START_TIMEOUT + ": " + command + "\n" + output());
            }
            sleep(20);
        }
    }

    private boolean listening() {
        if (socket != null) {
            return Files.exists(socket);
        }
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", port), 200);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    /** SIGKILL, as a crash: no goodbye on the connections. Waits until the process is gone. */
    public synchronized void kill() {
        if (process != null) {
            process.destroyForcibly();
            try {
                process.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
    }

    public Path socket() {
        return socket;
    }

    /** The server's process id while it runs (to pin it to a CPU, say); -1 when it does not. */
    public synchronized long pid() {
        return process != null && process.isAlive() ? process.pid() : -1;
    }

    /** The command line the server was started with. */
    public List<String> command() {
        return command;
    }

    public int port() {
        return port;
    }

    /** What the server printed so far. */
    public String output() {
        try {
            return Files.readString(log);
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    @Override
    public void close() throws IOException {
        kill();
        if (socket != null) {
            Files.deleteIfExists(socket);
        }
        Files.deleteIfExists(log);
    }

    /** A TCP port nobody listens on right now. */
    public static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    /**
     * Writes a CA and, signed by it, a server and a client certificate with their keys into
     * {@code dir} as ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem and
     * client-key.pem; the server's names are localhost and 127.0.0.1. {@code pkcs1ClientKey}
     * writes the client key as PKCS#1 RSA ("BEGIN RSA PRIVATE KEY", as certtool does).
     */
    public static Path tlsCredentials(Path dir, boolean pkcs1ClientKey) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
        Files.writeString(dir.resolve("server.ext"), "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                + "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n");
        Files.writeString(dir.resolve("client.ext"), "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                + "extendedKeyUsage=clientAuth\n");
        run(dir, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca-cert.pem",
                "-days", "3", "-subj", "/CN=jvhost test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign");
        for (String who : new String[] {"server", "client"}) {
            run(dir, "openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", who + "-key.pem", "-out", who + ".csr",
                    "-subj", "/CN=" + (who.equals("server") ? "localhost" : "jvhost test client"));
            run(dir, "openssl", "x509", "-req", "-in", who + ".csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
                    "-CAcreateserial", "-out", who + "-cert.pem", "-days", "3", "-extfile", who + ".ext");
        }
        if (pkcs1ClientKey) {
            run(dir, "openssl", "rsa", "-in", "client-key.pem", "-traditional", "-out", "client-key.pem");
        }
        return dir;
    }

    private static void run(Path dir, String... cmd) throws IOException {
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        try {
            if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
                throw new IOException(String.join(" ", cmd) + " failed: " + out);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
