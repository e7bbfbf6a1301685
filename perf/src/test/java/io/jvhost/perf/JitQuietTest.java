package io.jvhost.perf;

import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@link JitQuiet}: a warm-up never ends before one quiet window has passed, always ends at the
 * longest warm-up, and once the JIT has settled it stays settled.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS)
class JitQuietTest {
    @Test
    void shouldNotCallTheJitSettledBeforeOneQuietWindowHasPassed() {
        long now = System.nanoTime();
        assertFalse(new JitQuiet(now).settled(now + JitQuiet.QUIET_NANOS - 1));
    }

    @Test
    void shouldEndTheWarmUpAtTheLongestWarmUpWhateverTheJitDoes() {
        long now = System.nanoTime();
        JitQuiet q = new JitQuiet(now);
        assertTrue(q.settled(now + JitQuiet.MAX_NANOS));
        assertTrue(q.settled(now + 1), "settled stays settled");
    }
}
