package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The non-blocking stream socket the NBD queues use: gathering, scattering, EAGAIN, EPIPE, end of stream. */
class StreamSocketTest {
    private static void iov(MemorySegment v, int i, MemorySegment buffer, long offset, long length) {
        v.set(ValueLayout.JAVA_LONG, i * StreamSocket.IOVEC_SIZE + StreamSocket.IOV_BASE_OFFSET, buffer.address() + offset);
        v.set(ValueLayout.JAVA_LONG, i * StreamSocket.IOVEC_SIZE + StreamSocket.IOV_LEN_OFFSET, length);
    }

    @Test
    void shouldGatherOnSendAndScatterOnReceiveInOrder() throws Exception {
        StreamSocket[] pair = StreamSocket.pair();
        try (Arena arena = Arena.ofConfined(); StreamSocket a = pair[0]; StreamSocket b = pair[1]) {
            MemorySegment one = arena.allocateFrom("abc"), two = arena.allocateFrom("defgh");
            MemorySegment v = arena.allocate(4 * StreamSocket.IOVEC_SIZE, 8);
            iov(v, 0, one, 0, 3);
            iov(v, 1, two, 0, 5);
            assertEquals(8, a.writev(v.address(), 2));
            MemorySegment x = arena.allocate(2), y = arena.allocate(16);
            iov(v, 0, x, 0, 2);
            iov(v, 1, y, 0, 16);
            assertEquals(8, b.readv(v.address(), 2));
            assertEquals("ab", new String(x.toArray(ValueLayout.JAVA_BYTE)));
            assertEquals("cdefgh", new String(y.asSlice(0, 6).toArray(ValueLayout.JAVA_BYTE)));
        }
    }

    @Test
    void shouldSayEagainInsteadOfWaitingAndTakeWhatFitsWhenFull() throws Exception {
        StreamSocket[] pair = StreamSocket.pair();
        try (Arena arena = Arena.ofConfined(); StreamSocket a = pair[0]; StreamSocket b = pair[1]) {
            MemorySegment buf = arena.allocate(1 << 20);
            assertEquals(-LibC.EAGAIN, b.recv(buf.address(), buf.byteSize()), "nothing sent yet");
            long sent = 0;
            long n;
            while ((n = a.send(buf.address(), buf.byteSize())) > 0) {
                sent += n;
            }
            assertEquals(-LibC.EAGAIN, n, "a full socket");
            assertTrue(sent > 0, "it took what fitted: " + sent);
            long got = 0;
            while ((n = b.recv(buf.address(), buf.byteSize())) > 0) {
                got += n;
            }
            assertEquals(sent, got);
        }
    }

    @Test
    void shouldReportEndOfStreamAndEpipeWithoutASignal() throws Exception {
        StreamSocket[] pair = StreamSocket.pair();
        try (Arena arena = Arena.ofConfined(); StreamSocket a = pair[0]) {
            MemorySegment buf = arena.allocateFrom("x");
            pair[1].close();
            assertEquals(0, a.recv(buf.address(), 1), "the peer closed");
            assertEquals(-LibC.EPIPE, a.send(buf.address(), 1), "no SIGPIPE: the process lives on");
            byte[] still = buf.toArray(ValueLayout.JAVA_BYTE);
            assertArrayEquals(new byte[] {'x', 0}, still);
        }
    }
}
