package io.jvhost.testkit.guest;

import java.io.IOException;
import java.io.Writer;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Everything the guest printed on its serial console, with waits for text to appear.
 * Positions are absolute character offsets since boot, so they stay valid when the oldest text
 * is dropped to bound memory. Carriage returns are dropped: the guest tty turns every newline
 * into CR LF.
 *
 * <p>{@link #append} and {@link #close} are called by the single console reader thread; every
 * other method may be called from any thread.
 */
public final class Console {

    /** Beyond this many characters the oldest half is dropped; the log file keeps everything. */
    private static final int MAX_CHARS = 16 << 20;

    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final StringBuilder text = new StringBuilder();
    private final Writer log;
    private long dropped;
    private boolean closed;
    private boolean logFailed;

    /** @param log receives every appended character too; may be null */
    Console(Writer log) {
        this.log = log;
    }

    /** Reader thread: adds console output. */
    public void append(char[] chars, int length) {
        lock.lock();
        try {
            int start = text.length();
            for (int i = 0; i < length; i++) {
                if (chars[i] != '\r') {
                    text.append(chars[i]);
                }
            }
            writeLog(text, start, text.length());
            if (text.length() > MAX_CHARS) {
                int cut = text.length() / 2;
                text.delete(0, cut);
                dropped += cut;
            }
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Adds a line to the log file only, e.g. QEMU's own stderr. */
    public void logOnly(String line) {
        lock.lock();
        try {
            writeLog(line + "\n", 0, line.length() + 1);
        } finally {
            lock.unlock();
        }
    }

    /** Reader thread: the console reached end of file, so waits fail from now on. */
    public void close() {
        lock.lock();
        try {
            closed = true;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    public boolean isClosed() {
        lock.lock();
        try {
            return closed;
        } finally {
            lock.unlock();
        }
    }

    /** The position just after the last character received. */
    public long position() {
        lock.lock();
        try {
            return dropped + text.length();
        } finally {
            lock.unlock();
        }
    }

    /**
     * Waits until {@code needle} occurs at or after {@code from}; with {@code lineStart} only
     * occurrences at the start of a line count.
     *
     * @return the position of the match, or -1 if the console closed or the deadline passed
     *         first
     */
    public long awaitText(String needle, long from, boolean lineStart, long deadlineNanos) throws InterruptedException {
        lock.lock();
        try {
            long searchFrom = from;
            while (true) {
                searchFrom = Math.max(searchFrom, dropped);
                int index = text.indexOf(needle, (int) (searchFrom - dropped));
                while (index >= 0 && lineStart && !atLineStart(index)) {
                    index = text.indexOf(needle, index + 1);
                }
                if (index >= 0) {
                    return dropped + index;
                }
                // Rescan only the tail that could still begin a match once more text arrives.
                searchFrom = Math.max(searchFrom, dropped + text.length() - needle.length());
                long remaining = deadlineNanos - System.nanoTime();
                if (closed || remaining <= 0) {
                    return -1;
                }
                changed.awaitNanos(Math.min(remaining, TimeUnit.SECONDS.toNanos(1)));
            }
        } finally {
            lock.unlock();
        }
    }

    // Position 0 is a line start only if nothing was dropped before it.
    private boolean atLineStart(int index) {
        return index == 0 ? dropped == 0 : text.charAt(index - 1) == '\n';
    }

    /** Text between two positions; the part already dropped is left out. */
    public String text(long from, long to) {
        lock.lock();
        try {
            int start = (int) Math.max(0, from - dropped);
            int end = (int) Math.min(text.length(), Math.max(start, to - dropped));
            return text.substring(start, end);
        } finally {
            lock.unlock();
        }
    }

    /** All retained text. */
    public String text() {
        lock.lock();
        try {
            return text.toString();
        } finally {
            lock.unlock();
        }
    }

    /** The last lines, with terminal control characters shown as '?', for error messages. */
    public String tail(int maxLines) {
        String all = text();
        String[] lines = all.substring(Math.max(0, all.length() - 64 * 1024)).strip().split("\n", -1);
        StringBuilder out = new StringBuilder();
        for (int i = Math.max(0, lines.length - maxLines); i < lines.length; i++) {
            for (char c : lines[i].toCharArray()) {
                out.append(c < 0x20 && c != '\t' ? '?' : c);
            }
            out.append('\n');
        }
        return out.toString();
    }

    private void writeLog(CharSequence chars, int start, int end) {
        if (log == null || logFailed || start == end) {
            return;
        }
        try {
            log.append(chars, start, end);
            log.flush();
        } catch (IOException e) {
            logFailed = true; // a full disk must not stop the guest; consoleLog() still works
        }
    }
}
