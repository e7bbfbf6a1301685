package io.jvhost.perf;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Follows the log of a {@code dpdk-testpmd --stats-period=1} as it grows, block by block: each
 * periodic statistics block carries the port's cumulative RX-packets and TX-packets at the moment
 * testpmd printed it (it flushes once per block). Seeing a block the moment it appears lets a
 * driver read a backend's CPU time at the same moment, so packets and CPU time cover one window.
 * Driver thread only.
 */
final class TestpmdStats {
    /**
     * One periodic block (DPDK 22.11 {@code nic_stats_display}): "RX-packets: N RX-missed: ..." up
     * to its last throughput line "Tx-pps: N". The exit summary says RX-dropped, not RX-missed, so
     * it never matches.
     */
    static final Pattern BLOCK = Pattern.compile(
            "RX-packets:\\s+(\\d+)\\s+RX-missed:.*?TX-packets:\\s+(\\d+)\\s+TX-errors:.*?Tx-pps:\\s+\\d+", Pattern.DOTALL);
    private static final long POLL_MILLIS = 5;

    /** The cumulative counters of one block. */
    record Counts(long rxPackets, long txPackets) {
        /** TX-packets for g2h (what the frontend sent into the backend), RX-packets otherwise (what it received). */
        long of(String dir) {
            return dir.equals("g2h") ? txPackets : rxPackets;
        }
    }

    private final Path log;
    private long offset;
    private final StringBuilder pending = new StringBuilder();

    /** Follows {@code log} from its present end: blocks already written are never returned. */
    TestpmdStats(Path log) throws IOException {
        this.log = log;
        this.offset = Files.size(log);
    }

    /** The counters of the last complete block in {@code text}, or null without one. */
    static Counts lastBlock(CharSequence text) {
        Matcher m = BLOCK.matcher(text);
        Counts last = null;
        while (m.find()) {
            last = new Counts(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)));
        }
        return last;
    }

    /**
     * The newest block written since the previous call (or since this follower started), waiting
     * for one if there is none yet; null when {@code p} ended or {@code timeoutMillis} passed first.
     * The newest, because the caller reads a CPU meter right after: the block nearest in time.
     */
    Counts awaitNext(Process p, long timeoutMillis) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
        while (true) {
            readNew();
            Matcher m = BLOCK.matcher(pending);
            Counts last = null;
            int end = 0;
            while (m.find()) {
                last = new Counts(Long.parseLong(m.group(1)), Long.parseLong(m.group(2)));
                end = m.end();
            }
            if (last != null) {
                pending.delete(0, end);
                return last;
            }
            if (System.nanoTime() >= deadline || !p.isAlive()) {
                return null;
            }
            Thread.sleep(POLL_MILLIS);
        }
    }

    /** Appends what was written since the last call; returns whether there was anything. */
    private boolean readNew() throws IOException {
        // testpmd writes ASCII (and terminal escapes), so a chunk never splits a character.
        try (FileChannel ch = FileChannel.open(log, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size <= offset) {
                return false;
            }
            ByteBuffer b = ByteBuffer.allocate((int) Math.min(size - offset, 1 << 20));
            int n = ch.read(b, offset);
            if (n <= 0) {
                return false;
            }
            offset += n;
            pending.append(new String(b.array(), 0, n, StandardCharsets.UTF_8));
            return true;
        }
    }
}
