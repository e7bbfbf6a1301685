package io.jvhost.perf;

import java.nio.file.Path;
import java.util.List;

/**
 * What every end-to-end benchmark takes: how many runs of how many seconds, the CPUs the two sides
 * are pinned to, and where the results go. Fields as the CLI fills them.
 */
public abstract class BenchOptions {
    /** Queue pairs (net) or request queues (blk), one configuration each. */
    public List<Integer> queues = List.of(1, 2);
    /** Runs per side and configuration. */
    public int runs = 3;
    /** Measured seconds per run. */
    public int seconds;
    public int warmupSeconds = 1;
    public int frontendCpu = 0;
    /** CPU 1, or CPU 0 too on a one-CPU machine (where the numbers mean little). */
    public int backendCpu = Math.min(1, Runtime.getRuntime().availableProcessors() - 1);
    public Path out = Path.of("perf", "results");

    BenchOptions(int seconds) {
        this.seconds = seconds;
    }

    /** One queue, one run of one second per side, for the {@code --quick} variants. */
    void quick(int warmupSeconds) {
        this.queues = List.of(1);
        this.runs = 1;
        this.seconds = 1;
        this.warmupSeconds = warmupSeconds;
    }
}
