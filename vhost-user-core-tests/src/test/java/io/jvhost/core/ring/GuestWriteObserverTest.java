package io.jvhost.core.ring;

import io.jvhost.core.memory.DirtyLog;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * The test hook behind the live-migration guest test's exact memory comparison: while a dirty log
 * is in force, a queue tells the observer its used ring and the writable buffers of every chain it
 * takes (found from the chains, not from the dirty-log marking); without a log, nothing.
 */
class GuestWriteObserverTest {
    private final List<String> seen = Collections.synchronizedList(new ArrayList<>());

    @AfterEach
    void removeObserver() {
        GuestWriteObserver.install(null);
    }

    private static String range(long gpa, long length) {
        return "0x" + Long.toHexString(gpa) + "+" + length;
    }

    @Test
    void shouldTellTheObserverTheUsedRingAndEveryWritableBufferOnlyWhileADirtyLogIsInForce() throws Exception {
        GuestWriteObserver.install((gpa, length) -> seen.add(range(gpa, length)));
        try (RingFixture f = RingFixture.of(8); Arena arena = Arena.ofConfined()) {
            f.configure();
            long r = f.buffer(100), w = f.buffer(200);
            f.driver.post(Buffer.readable(r, 100), Buffer.writable(w, 200));
            assertNotNull(f.queue.next());
            assertEquals(List.of(), seen, "no dirty log, nothing observed");

            f.queue.dirtyLog(new DirtyLog(arena.allocate(4096)), -1, f.usedGpa);
            f.configure(f.queue.position().lastAvailIdx(), false, true);
            assertEquals(List.of(range(f.usedGpa, 6 + 8 * 8)), seen, "the used ring, once the log is in force");

            seen.clear();
            long r2 = f.buffer(64), w1 = f.buffer(300), w2 = f.buffer(5000);
            f.driver.post(Buffer.readable(r2, 64), Buffer.writable(w1, 300), Buffer.writable(w2, 5000));
            f.driver.post(Buffer.readable(r2, 64));
            assertNotNull(f.queue.next());
            assertNotNull(f.queue.next());
            assertEquals(List.of(range(w1, 300), range(w2, 5000)), seen, "writable buffers only");

            seen.clear();
            f.queue.dirtyLog(null, -1, 0);
            f.configure(f.queue.position().lastAvailIdx(), false, true);
            f.driver.post(Buffer.writable(w1, 300));
            assertNotNull(f.queue.next());
            assertEquals(List.of(), seen, "nothing once the log is gone");
        }
    }
}
