package io.jvhost.blk;

import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * A jvhost blk backend on an RBD image in a process of its own (what {@code ./jvhost blk --rbd}
 * runs), so a test can kill it with SIGKILL. Arguments: SOCKET CEPH_CONF POOL/IMAGE QUEUES.
 * Prints READY once it listens.
 */
public final class RbdBackendProcess {
    private RbdBackendProcess() {}

    public static void main(String[] args) throws Exception {
        Path socket = Path.of(args[0]), conf = Path.of(args[1]);
        String[] image = args[2].split("/");
        int queues = Integer.parseInt(args[3]);
        ControlLoop loop = new ControlLoop();
        RbdStore store = RbdStore.open(conf, null, image[0], image[1], false, Duration.ofSeconds(20));
        Backend backend = new Backend("blk", new BlkDevice(store, queues), BackendOptions.DEFAULT, loop);
        backend.start();
        VhostUserServer.listen(socket, backend, loop);
        System.out.println("READY");
        System.out.flush();
        Thread.currentThread().join();
    }

    /** Starts {@link #main} in a new JVM with this test's class path; returns once it listens. */
    static Process start(Path socket, Path conf, String image, int queues, Path log) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                RbdBackendProcess.class.getName(), socket.toString(), conf.toString(), image, String.valueOf(queues)));
        Process p = new ProcessBuilder(cmd)
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (System.nanoTime() < deadline) {
            String text = Files.readString(log);
            if (text.lastIndexOf("READY") > text.lastIndexOf("STARTING") && Files.exists(socket)) {
                return p;
            }
            if (!p.isAlive()) {
                throw new IllegalStateException("backend died: " + text);
            }
            Thread.sleep(50);
        }
        p.destroyForcibly();
        throw new IllegalStateException("backend did not start: " + Files.readString(log));
    }
}
