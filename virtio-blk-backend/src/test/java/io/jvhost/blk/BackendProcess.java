package io.jvhost.blk;

import io.jvhost.core.runtime.Backend;
import io.jvhost.core.runtime.BackendOptions;
import io.jvhost.core.transport.ControlLoop;
import io.jvhost.core.transport.VhostUserServer;

import java.nio.file.Path;

/**
 * A jvhost blk backend in a process of its own (what {@code ./jvhost blk --file IMAGE} runs), so a
 * test can kill it with SIGKILL. Prints READY once it listens.
 */
public final class BackendProcess {
    private BackendProcess() {}

    public static void main(String[] args) throws Exception {
        Path socket = Path.of(args[0]), image = Path.of(args[1]);
        int queues = Integer.parseInt(args[2]);
        boolean stallWrites = args.length > 3 && args[3].equals("--stall-writes");
        ControlLoop loop = new ControlLoop();
        BlockStore store = new FileStore(image, false, false, 2);
        Backend backend = new Backend("blk", new BlkDevice(stallWrites ? new StallingWrites(store) : store, queues),
                BackendOptions.DEFAULT, loop);
        backend.start();
        VhostUserServer.listen(socket, backend, loop);
        System.out.println("READY");
        System.out.flush();
        Thread.currentThread().join();
    }

    /** Takes writes and never finishes them: a backend that dies now leaves them in flight. */
    private record StallingWrites(BlockStore store) implements BlockStore {
        @Override
        public long size() {
            return store.size();
        }

        @Override
        public void submit(BlockRequest[] requests, int count) {
            for (int i = 0; i < count; i++) {
                if (requests[i].type() == BlockRequest.Type.WRITE) {
                    System.out.println("STALLED write at " + requests[i].offset());
                    System.out.flush();
                } else {
                    store.submit(new BlockRequest[] {requests[i]}, 1);
                }
            }
        }
    }

    /** Starts {@link #main} in a new JVM with this test's class path; returns once it listens. */
    static Process start(Path socket, Path image, int queues, Path log, String... options) throws Exception {
        java.util.List<String> cmd = new java.util.ArrayList<>(java.util.List.of(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                BackendProcess.class.getName(), socket.toString(), image.toString(), String.valueOf(queues)));
        cmd.addAll(java.util.List.of(options));
        Process p = new ProcessBuilder(cmd)
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.appendTo(log.toFile())).start();
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (System.nanoTime() < deadline) {
            if (java.nio.file.Files.readString(log).contains("READY") && java.nio.file.Files.exists(socket)) {
                String text = java.nio.file.Files.readString(log);
                if (text.lastIndexOf("READY") > text.lastIndexOf("STARTING")) {
                    return p;
                }
            }
            if (!p.isAlive()) {
                throw new IllegalStateException("backend died: " + java.nio.file.Files.readString(log));
            }
            Thread.sleep(50);
        }
        p.destroyForcibly();
        throw new IllegalStateException("backend did not start: " + java.nio.file.Files.readString(log));
    }
}
