package io.jvhost.testkit.guest;

import java.io.ByteArrayOutputStream;
import java.io.Closeable;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;

/**
 * Client for QEMU's human monitor (HMP) on a unix socket. The socket is non-blocking and read
 * through a selector so every command has a deadline; a blocking channel has no read timeout.
 *
 * <p>Any thread; commands are serialized.
 */
public final class HumanMonitor implements Closeable {

    private static final String PROMPT = "(qemu) ";
    // HMP echoes what it reads with line-editing escapes; these never belong to a reply.
    private static final Pattern ESCAPES = Pattern.compile("\u001b(\\[[0-9;?]*[A-Za-z]|[A-Za-z])");

    private final Path socket;
    private SocketChannel channel;
    private Selector selector;

    HumanMonitor(Path socket) {
        this.socket = socket;
    }

    /**
     * Runs one command and returns its reply without echo, prompt or escapes. A command that
     * makes QEMU exit ({@code quit}) returns what was printed before the connection closed.
     *
     * @throws IOException on connection failure or if no reply came before the deadline
     */
    public synchronized String command(String command, long deadlineNanos) throws IOException {
        if (command.indexOf('\n') >= 0 || command.indexOf('\r') >= 0) {
            throw new IllegalArgumentException("one monitor command per call: " + command);
        }
        if (channel == null) {
            connect(deadlineNanos);
            readReply(deadlineNanos); // banner: "QEMU x.y.z monitor - type 'help' ..."
        }
        ByteBuffer out = ByteBuffer.wrap((command + "\n").getBytes(StandardCharsets.UTF_8));
        while (out.hasRemaining()) {
            if (channel.write(out) == 0) {
                await(SelectionKey.OP_WRITE, deadlineNanos);
            }
        }
        String raw = readReply(deadlineNanos);
        String reply = ESCAPES.matcher(raw).replaceAll("").replace("\r", "");
        int echoEnd = reply.indexOf('\n'); // the first line is our command echoed back
        reply = echoEnd < 0 ? "" : reply.substring(echoEnd + 1);
        if (reply.endsWith(PROMPT)) {
            reply = reply.substring(0, reply.length() - PROMPT.length());
        }
        return reply;
    }

    @Override
    public synchronized void close() {
        try {
            if (selector != null) {
                selector.close();
            }
            if (channel != null) {
                channel.close();
            }
        } catch (IOException e) {
            // nothing useful to do: the socket goes away with QEMU
        } finally {
            selector = null;
            channel = null;
        }
    }

    // QEMU creates the socket a moment after it starts, so early attempts are retried.
    private void connect(long deadlineNanos) throws IOException {
        IOException last = null;
        while (System.nanoTime() - deadlineNanos < 0) {
            SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX);
            try {
                ch.connect(UnixDomainSocketAddress.of(socket));
                ch.configureBlocking(false);
                selector = Selector.open();
                ch.register(selector, 0);
                channel = ch;
                return;
            } catch (IOException e) {
                ch.close();
                last = e;
            }
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while connecting to " + socket, e);
            }
        }
        throw new IOException("cannot connect to QEMU monitor " + socket, last);
    }

    // Reads until the prompt ends the buffer (reply complete) or QEMU closes the connection.
    private String readReply(long deadlineNanos) throws IOException {
        ByteArrayOutputStream reply = new ByteArrayOutputStream();
        ByteBuffer buf = ByteBuffer.allocate(8192);
        while (true) {
            buf.clear();
            int n = channel.read(buf);
            if (n < 0) {
                close();
                return reply.toString(StandardCharsets.UTF_8);
            }
            if (n == 0) {
                await(SelectionKey.OP_READ, deadlineNanos);
                continue;
            }
            reply.write(buf.array(), 0, n);
            if (reply.toString(StandardCharsets.UTF_8).endsWith(PROMPT)) {
                return reply.toString(StandardCharsets.UTF_8);
            }
        }
    }

    private void await(int op, long deadlineNanos) throws IOException {
        long remaining = deadlineNanos - System.nanoTime();
        if (remaining <= 0) {
            close(); // a half-read reply would confuse the next command
            throw new IOException("QEMU monitor did not answer in time");
        }
        SelectionKey key = channel.keyFor(selector);
        key.interestOps(op);
        selector.select(Math.max(1, TimeUnit.NANOSECONDS.toMillis(remaining)));
        selector.selectedKeys().clear();
    }
}
