package io.jvhost.testkit.guest;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.io.Reader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A QEMU (TCG) guest booted from a {@link GuestImage}, driven over its serial console: run shell
 * commands, reboot, talk to the monitor. Typical use:
 *
 * <pre>{@code
 * try (QemuGuest guest = QemuGuest.builder()
 *         .extraArgs("-chardev", "socket,id=c0,path=" + sock, "-device", "vhost-user-rng-pci,chardev=c0")
 *         .logFile(Path.of("target/qemu.log")).build()) {
 *     guest.start();
 *     guest.awaitReady(Duration.ofMinutes(2));
 *     QemuGuest.Result r = guest.exec("head -c 16 /dev/hwrng | wc -c", Duration.ofSeconds(30));
 * }
 * }</pre>
 *
 * <p>Guest memory is a shared memfd so vhost-user backends can map it. Every wait has a
 * deadline and fails with a {@link GuestException} carrying the console tail, also when QEMU
 * exits underneath it.
 *
 * <p>Threads: {@link #start}, {@link #awaitReady}, {@link #exec}, {@link #reboot} and
 * {@link #quit} are meant for one controlling thread (usually the test's); they are serialized,
 * so a second caller waits rather than interleaving console input. {@link #monitor},
 * {@link #consoleLog}, {@link #commandLine}, {@link #isRunning} and {@link #close} may be called
 * from any thread; {@code close} makes pending waits fail promptly.
 */
public final class QemuGuest implements AutoCloseable {

    private static final Logger LOG = LoggerFactory.getLogger(QemuGuest.class);

    public static final String READY = "JVHOST-GUEST-READY";
    private static final String BEGIN = "__JVHOST_BEGIN__ ";
    private static final String DONE = "__JVHOST_DONE__ ";
    /** The guest reads commands in canonical tty mode, which holds at most 4095 bytes a line. */
    private static final int MAX_COMMAND_BYTES = 4000;
    private static final int TAIL_LINES = 40;
    private static final Duration MONITOR_TIMEOUT = Duration.ofSeconds(10);
    private static final Duration CLOSE_QUIT_TIMEOUT = Duration.ofSeconds(5);
    private static final Pattern SHELL_SAFE = Pattern.compile("[A-Za-z0-9_./,:=+@%-]+");

    /** What QEMU printed on stderr so far (its last 8-16 KiB): where it reports a vhost-user backend that went away. */
    public String stderr() {
        return stderrTail.toString();
    }

    /** Output of one {@link #exec}: stdout and stderr interleaved as the guest printed them. */
    public record Result(String output, int exitStatus) {

        public boolean succeeded() {
            return exitStatus == 0;
        }
    }

    private final List<String> command;
    private final Path tempDir;
    private final Path logFile;
    private final HumanMonitor monitor;
    private final Object control = new Object();
    private final AtomicLong nextCommandId = new AtomicLong(1);
    private final Object lifecycle = new Object();

    private volatile Console console;
    private volatile Process process;
    private OutputStream consoleInput;
    private Writer log;
    private Thread consoleReader;
    private Thread stderrReader;
    private final StringBuffer stderrTail = new StringBuffer();
    /** Console position where the current boot started; READY must appear after it. */
    private volatile long bootMark;
    private volatile boolean ready;
    private boolean closed;

    private QemuGuest(List<String> command, Path tempDir, Path logFile) {
        this.command = command;
        this.tempDir = tempDir;
        this.logFile = logFile;
        this.monitor = new HumanMonitor(tempDir.resolve("monitor.sock"));
        this.console = new Console(null);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** The QEMU command line, quoted so it can be pasted into a shell. Any thread. */
    public String commandLine() {
        StringBuilder line = new StringBuilder();
        for (String arg : command) {
            if (!line.isEmpty()) {
                line.append(' ');
            }
            line.append(SHELL_SAFE.matcher(arg).matches() ? arg : "'" + arg.replace("'", "'\\''") + "'");
        }
        return line.toString();
    }

    /** The QEMU process id, or -1 before {@link #start()}. Any thread. */
    public long pid() {
        Process p = process;
        return p == null ? -1 : p.pid();
    }

    /**
     * This QEMU's guest RAM as a file (its memory-backend-memfd, through {@code /proc/PID/fd}),
     * for comparing two QEMUs' memories after a migration. Controlling thread, while QEMU runs.
     */
    public Path guestRamFile() throws IOException {
        Path fds = Path.of("/proc", Long.toString(pid()), "fd");
        try (var list = Files.list(fds)) {
            for (Path fd : (Iterable<Path>) list::iterator) {
                try {
                    if (Files.readSymbolicLink(fd).toString().startsWith("/memfd:memory-backend-memfd")) {
                        return fd;
                    }
                } catch (IOException e) {
                    // an fd closed while listing: not the memory backend
                }
            }
        }
        throw new GuestException("no memfd guest RAM among the fds of QEMU " + pid());
    }

    /** The QEMU command as a list of arguments. Any thread. */
    public List<String> command() {
        return command;
    }

    /**
     * Launches QEMU; returns at once. Controlling thread, once.
     *
     * @throws IOException if QEMU cannot be started or the log file cannot be opened
     */
    public void start() throws IOException {
        synchronized (control) {
            synchronized (lifecycle) {
                if (process != null || closed) {
                    throw new IllegalStateException("a QemuGuest starts once");
                }
                if (logFile != null) {
                    Path parent = logFile.toAbsolutePath().getParent();
                    if (parent != null) {
                        Files.createDirectories(parent);
                    }
                    log = Files.newBufferedWriter(logFile, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                            StandardOpenOption.APPEND);
                    log.write("\n==== " + Instant.now() + " " + commandLine() + "\n");
                    log.flush();
                }
                console = new Console(log);
                bootMark = 0;
                LOG.info("starting guest: {}", commandLine());
                process = new ProcessBuilder(command).directory(tempDir.toFile()).start();
                consoleInput = process.getOutputStream();
                String name = "qemu-" + process.pid();
                consoleReader = Thread.ofPlatform().daemon().name(name + "-console")
                        .start(() -> pumpConsole(process.getInputStream()));
                stderrReader = Thread.ofPlatform().daemon().name(name + "-stderr")
                        .start(() -> pumpStderr(process.getErrorStream()));
            }
        }
    }

    /**
     * Waits until the guest's init printed {@code JVHOST-GUEST-READY} since the last start or
     * reboot. Controlling thread.
     *
     * @throws GuestException on timeout or if QEMU exits first
     */
    public void awaitReady(Duration timeout) {
        synchronized (control) {
            requireStarted();
            long start = System.nanoTime();
            long deadline = start + timeout.toNanos();
            if (await(READY + "\n", bootMark, true, deadline) < 0) {
                throw failure("the guest to print " + READY, timeout);
            }
            ready = true;
            LOG.info("guest ready after {} ms", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
        }
    }

    /**
     * Takes over a guest that arrived by incoming migration ({@code -incoming} among the extra
     * arguments): once QEMU reports the migration complete, the guest's shell reads this QEMU's
     * console, so {@link #exec} works without a boot. Waits until this QEMU runs the guest:
     * console input that arrives while the incoming state is still loading is overwritten by the
     * migrated serial port. Controlling thread.
     */
    public void adoptMigratedGuest(Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!monitor("info status").contains("running")) {
            if (System.nanoTime() > deadline) {
                throw new GuestException("the migrated guest did not start running within " + timeout);
            }
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new GuestException("interrupted while waiting for the migrated guest", e);
            }
        }
        synchronized (control) {
            requireStarted();
            ready = true;
        }
    }

    /**
     * Runs {@code command} with {@code sh -c} in the guest, stdin from {@code /dev/null}, and
     * returns its output and exit status. After a timeout the command keeps running in the guest
     * and later commands queue behind it; reboot to get a clean guest. Controlling thread.
     *
     * @param command one line of shell, at most 4000 bytes, no control characters except tab
     * @throws GuestException on timeout, if QEMU exits, or if the guest is not ready
     */
    public Result exec(String command, Duration timeout) {
        checkCommand(command);
        synchronized (control) {
            requireReady();
            long deadline = System.nanoTime() + timeout.toNanos();
            long id = nextCommandId.getAndIncrement();
            long mark = console.position();
            send(id + " " + command);

            String begin = BEGIN + id + "\n";
            long beginAt = await(begin, mark, true, deadline);
            if (beginAt < 0) {
                throw failure("command to start: " + command, timeout);
            }
            long outputStart = beginAt + begin.length();
            // The guest prints a newline before DONE, so DONE starts a line even after output
            // without a final newline; that newline is not part of the output.
            String done = "\n" + DONE + id + " ";
            long doneAt = await(done, outputStart, false, deadline);
            long statusStart = doneAt + done.length();
            long statusEnd = doneAt < 0 ? -1 : await("\n", statusStart, false, deadline);
            if (statusEnd < 0) {
                throw failure("command to finish: " + command, timeout);
            }
            String output = console.text(outputStart, doneAt);
            String status = console.text(statusStart, statusEnd).strip();
            try {
                return new Result(output, Integer.parseInt(status));
            } catch (NumberFormatException e) {
                // Only a kernel message printed into the marker line gets here.
                throw new GuestException("garbled exit status '" + status + "' for: " + command, e);
            }
        }
    }

    /**
     * Reboots the guest with {@code reboot -f} and waits until it is ready again. Controlling
     * thread.
     *
     * @throws GuestException on timeout or if QEMU exits
     */
    public void reboot(Duration timeout) {
        synchronized (control) {
            requireReady();
            markBoot();
            send(nextCommandId.getAndIncrement() + " reboot -f");
            awaitReady(timeout);
        }
    }

    /**
     * Sends one human monitor command, e.g. {@code info status}, and returns the reply text.
     * After {@code system_reset} call {@link #awaitReady} before the next {@link #exec}. Any
     * thread.
     *
     * @throws GuestException if the monitor does not answer within 10 seconds
     */
    public String monitor(String hmpCommand) {
        requireStarted();
        if (hmpCommand.strip().startsWith("system_reset")) {
            markBoot();
        }
        try {
            return monitor.command(hmpCommand, System.nanoTime() + MONITOR_TIMEOUT.toNanos());
        } catch (IOException e) {
            String exit = exitDescription();
            throw new GuestException("monitor command '" + hmpCommand + "' failed: " + e.getMessage()
                    + (exit.isEmpty() ? "" : " (" + exit + ")"), e);
        }
    }

    /**
     * Quits QEMU through the monitor and waits for the process to exit. Controlling thread.
     *
     * @throws GuestException if QEMU is still running after {@code timeout}
     */
    public void quit(Duration timeout) {
        requireStarted();
        long deadline = System.nanoTime() + timeout.toNanos();
        if (process.isAlive()) {
            try {
                monitor.command("quit", deadline);
            } catch (IOException e) {
                LOG.debug("monitor quit failed, waiting for exit anyway", e);
            }
        }
        ready = false;
        try {
            if (!process.waitFor(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS)) {
                throw failure("QEMU to exit after quit", timeout);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GuestException("interrupted while waiting for QEMU to exit", e);
        }
        joinReaders();
        LOG.info("guest quit, QEMU exit status {}", process.exitValue());
    }

    /** True between {@link #start} and QEMU's exit. Any thread. */
    public boolean isRunning() {
        synchronized (lifecycle) {
            return process != null && process.isAlive();
        }
    }

    /** Everything the guest printed so far (carriage returns removed). Any thread. */
    public String consoleLog() {
        return console.text();
    }

    /**
     * Quits QEMU if it runs, kills it if it does not exit within a few seconds, and deletes the
     * temporary files. Idempotent; any thread.
     */
    @Override
    public void close() {
        synchronized (lifecycle) {
            if (closed) {
                return;
            }
            closed = true;
        }
        try {
            if (process != null && process.isAlive()) {
                boolean quitSent = false;
                try {
                    monitor.command("quit", System.nanoTime() + CLOSE_QUIT_TIMEOUT.toNanos());
                    quitSent = true;
                } catch (IOException | RuntimeException e) {
                    LOG.debug("monitor quit during close failed", e);
                }
                terminate(quitSent ? CLOSE_QUIT_TIMEOUT : Duration.ofMillis(200));
            }
        } finally {
            ready = false;
            monitor.close();
            if (consoleInput != null) {
                closeQuietly(consoleInput);
            }
            joinReaders();
            if (log != null) {
                closeQuietly(log);
            }
            deleteRecursively(tempDir);
        }
    }

    // Escalates from quit to SIGTERM to SIGKILL, a few seconds each. A QEMU stuck waiting for a
    // vhost-user backend's reply does not serve its monitor, so quit alone is not enough.
    private void terminate(Duration quitGrace) {
        try {
            if (process.waitFor(quitGrace.toMillis(), TimeUnit.MILLISECONDS)) {
                return;
            }
            LOG.warn("QEMU {} did not quit; terminating it", process.pid());
            process.destroy();
            if (process.waitFor(3, TimeUnit.SECONDS)) {
                return;
            }
            process.destroyForcibly();
            if (!process.waitFor(5, TimeUnit.SECONDS)) {
                LOG.error("QEMU {} survived SIGKILL", process.pid());
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }

    private void markBoot() {
        ready = false;
        bootMark = console.position();
    }

    private void requireStarted() {
        synchronized (lifecycle) {
            if (process == null) {
                throw new IllegalStateException("start() the guest first");
            }
        }
    }

    private void requireReady() {
        requireStarted();
        if (!ready) {
            throw new IllegalStateException("guest is not ready: call awaitReady() after start, reboot or reset");
        }
    }

    private static void checkCommand(String command) {
        Objects.requireNonNull(command, "command");
        if (command.isBlank()) {
            throw new IllegalArgumentException("empty command");
        }
        // The guest tty is in canonical mode: control characters would edit the line or signal.
        for (int i = 0; i < command.length(); i++) {
            char c = command.charAt(i);
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                throw new IllegalArgumentException("command contains control character 0x"
                        + Integer.toHexString(c) + ": " + command);
            }
        }
        if (command.getBytes(StandardCharsets.UTF_8).length > MAX_COMMAND_BYTES) {
            throw new IllegalArgumentException("command longer than " + MAX_COMMAND_BYTES + " bytes");
        }
    }

    private void send(String line) {
        try {
            consoleInput.write((line + "\n").getBytes(StandardCharsets.UTF_8));
            consoleInput.flush();
        } catch (IOException e) {
            String exit = exitDescription();
            throw new GuestException("cannot write to the guest console: " + e.getMessage()
                    + (exit.isEmpty() ? "" : " (" + exit + ")"), e);
        }
    }

    private long await(String text, long from, boolean lineStart, long deadline) {
        try {
            return console.awaitText(text, from, lineStart, deadline);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GuestException("interrupted while waiting for the guest", e);
        }
    }

    private GuestException failure(String waitingFor, Duration timeout) {
        String exit = exitDescription();
        StringBuilder message = new StringBuilder(exit.isEmpty()
                ? "timed out after " + seconds(timeout) + " waiting for " + waitingFor
                : exit + " while waiting for " + waitingFor);
        String stderr = stderrTail.toString().strip();
        if (!stderr.isEmpty()) {
            message.append("\n--- QEMU stderr ---\n").append(stderr);
        }
        String tail = console.tail(TAIL_LINES);
        message.append("\n--- last console lines ---\n").append(tail.isBlank() ? "(no console output)\n" : tail);
        if (logFile != null) {
            message.append("--- full log: ").append(logFile.toAbsolutePath()).append('\n');
        }
        return new GuestException(message.toString());
    }

    /** "QEMU exited with status 1", or "" while it runs. */
    private String exitDescription() {
        if (process == null) {
            return "";
        }
        if (console.isClosed()) {
            try {
                process.waitFor(1, TimeUnit.SECONDS); // stdout closes a moment before the exit
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        return process.isAlive() ? "" : "QEMU exited with status " + process.exitValue();
    }

    private static String seconds(Duration d) {
        return String.format("%.1f s", d.toMillis() / 1000.0);
    }

    private void pumpConsole(InputStream stdout) {
        try (Reader in = new InputStreamReader(stdout, StandardCharsets.UTF_8)) {
            char[] buf = new char[8192];
            for (int n; (n = in.read(buf)) >= 0; ) {
                console.append(buf, n);
            }
        } catch (IOException e) {
            LOG.debug("console reader stopped", e);
        } finally {
            console.close();
        }
    }

    private void pumpStderr(InputStream stderr) {
        try (BufferedReader in = new BufferedReader(new InputStreamReader(stderr, StandardCharsets.UTF_8))) {
            for (String line; (line = in.readLine()) != null; ) {
                LOG.info("qemu: {}", line);
                console.logOnly("[qemu stderr] " + line);
                stderrTail.append(line).append('\n');
                if (stderrTail.length() > 16384) {
                    stderrTail.delete(0, stderrTail.length() - 8192);
                }
            }
        } catch (IOException e) {
            LOG.debug("stderr reader stopped", e);
        }
    }

    private void joinReaders() {
        try {
            for (Thread reader : new Thread[] {consoleReader, stderrReader}) {
                if (reader != null) {
                    reader.join(2000);
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void closeQuietly(AutoCloseable c) {
        try {
            c.close();
        } catch (Exception e) {
            LOG.debug("close failed", e);
        }
    }

    private static void deleteRecursively(Path dir) {
        try {
            Files.walkFileTree(dir, new SimpleFileVisitor<>() {
                @Override
                public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                    Files.deleteIfExists(file);
                    return FileVisitResult.CONTINUE;
                }

                @Override
                public FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
                    Files.deleteIfExists(d);
                    return FileVisitResult.CONTINUE;
                }
            });
        } catch (IOException e) {
            LOG.debug("cannot delete {}", dir, e);
        }
    }

    /** Configures a guest. Not thread-safe; use from one thread, then discard. */
    public static final class Builder {

        private GuestImage image;
        private int memoryMib = 256;
        private int cpus = 1;
        private final List<String> extraArgs = new ArrayList<>();
        private String kernelArgs = "";
        private Path logFile;
        private Path qemu;

        private Builder() {
        }

        /** The image to boot; by default {@link GuestImage#prepare()} at {@link #build}. */
        public Builder image(GuestImage image) {
            this.image = Objects.requireNonNull(image);
            return this;
        }

        /** Guest RAM in MiB, default 256; also the size of the shared memfd backend. */
        public Builder memoryMib(int memoryMib) {
            if (memoryMib < 64) {
                throw new IllegalArgumentException("the guest kernel needs at least 64 MiB: " + memoryMib);
            }
            this.memoryMib = memoryMib;
            return this;
        }

        /** Number of vCPUs, default 1. */
        public Builder cpus(int cpus) {
            if (cpus < 1) {
                throw new IllegalArgumentException("cpus " + cpus);
            }
            this.cpus = cpus;
            return this;
        }

        /** Appends QEMU arguments, one per element, e.g. {@code "-device", "vhost-user-blk-pci,chardev=c0"}. */
        public Builder extraArgs(List<String> args) {
            extraArgs.addAll(args);
            return this;
        }

        /** Appends QEMU arguments, one per element. */
        public Builder extraArgs(String... args) {
            return extraArgs(List.of(args));
        }

        /** Added to the kernel command line after {@code console=ttyS0 quiet panic=-1}. */
        public Builder kernelArgs(String kernelArgs) {
            this.kernelArgs = Objects.requireNonNull(kernelArgs);
            return this;
        }

        /** Appends the console output and QEMU's stderr to this file; none by default. */
        public Builder logFile(Path logFile) {
            this.logFile = logFile;
            return this;
        }

        /** The QEMU binary; found in /usr/bin or on PATH by default. */
        public Builder qemu(Path qemu) {
            this.qemu = qemu;
            return this;
        }

        /**
         * Prepares the image if none was given and a temporary directory for the monitor
         * socket; does not start QEMU.
         *
         * @throws IllegalStateException if QEMU, a kernel or busybox is missing
         */
        public QemuGuest build() throws IOException {
            Path binary = qemu != null ? qemu : HostTools.qemu().orElseThrow(() -> new IllegalStateException(
                    "qemu-system-x86_64 not found; install: apt-get install " + HostTools.QEMU_PACKAGE));
            GuestImage boot = image != null ? image : GuestImage.prepare();
            Path tempDir = Files.createTempDirectory("jvhost-qemu-");
            String mem = memoryMib + "M";
            List<String> cmd = new ArrayList<>(List.of(binary.toString(),
                    "-accel", "tcg", "-machine", "q35", "-cpu", "max", "-m", mem, "-smp", Integer.toString(cpus),
                    // vhost-user backends map guest RAM from the fd QEMU sends: it must be a
                    // shared memfd, or the device waits forever for memory it cannot see.
                    "-object", "memory-backend-memfd,id=mem,size=" + mem + ",share=on",
                    "-numa", "node,memdev=mem",
                    "-kernel", boot.kernel().toString(), "-initrd", boot.initramfs().toString(),
                    "-append", ("console=ttyS0 quiet panic=-1 " + kernelArgs).strip(),
                    "-nographic", "-nodefaults", "-no-user-config", "-serial", "stdio",
                    "-monitor", "unix:" + tempDir.resolve("monitor.sock") + ",server=on,wait=off"));
            cmd.addAll(extraArgs);
            return new QemuGuest(List.copyOf(cmd), tempDir, logFile);
        }
    }
}
