package io.jvhost.testkit;

import static org.junit.jupiter.api.Assertions.fail;

import java.time.Duration;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * Waits for a condition another thread makes true, with a deadline: the test fails with a message
 * instead of hanging. Never a fixed sleep: the condition is re-checked every millisecond or so.
 */
public final class Await {
    /** Long enough for a loaded two-core machine, short enough that a broken test ends. */
    public static final Duration DEFAULT = Duration.ofSeconds(10);

    private Await() {
    }

    /** Waits until {@code condition} holds; fails with {@code what} when {@code timeout} passes first. */
    public static void until(String what, BooleanSupplier condition, Duration timeout) {
        until(() -> what, condition, timeout);
    }

    public static void until(String what, BooleanSupplier condition) {
        until(what, condition, DEFAULT);
    }

    /** As {@link #until(String, BooleanSupplier, Duration)}; {@code what} is built only on failure. */
    public static void until(Supplier<String> what, BooleanSupplier condition, Duration timeout) {
        if (!holdsWithin(condition, timeout)) {
            fail("timed out after " + timeout.toMillis() + " ms waiting for: " + what.get());
        }
    }

    /** Whether {@code condition} holds within {@code timeout}. */
    public static boolean holdsWithin(BooleanSupplier condition, Duration timeout) {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() - deadline > 0) {
                return condition.getAsBoolean();
            }
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }
        return true;
    }
}
