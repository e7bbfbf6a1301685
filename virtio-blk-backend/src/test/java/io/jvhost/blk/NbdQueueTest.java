package io.jvhost.blk;

import io.jvhost.blk.nbd.NbdStore;
import io.jvhost.blk.nbd.NbdUri;
import io.jvhost.testkit.frontend.DriverQueue.Buffer;

import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static io.jvhost.blk.BlkRig.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The queues' own NBD connections (driven by the pollers) against a server written here that
 * speaks NBD correctly but awkwardly, or breaks it: replies dribbled out a few bytes at a time,
 * a server too slow to take big writes at once, replies for cookies never sent, bad magic, a
 * connection closed in the middle of a READ's data. The guest sees correct data or an I/O error,
 * never a wrong byte, and the backend keeps serving.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class NbdQueueTest {
    static final long NBDMAGIC = 0x4e42444d41474943L, IHAVEOPT = 0x49484156454F5054L, OPTION_REPLY = 0x0003e889045565a9L;
    static final int REQUEST_MAGIC = 0x25609513, SIMPLE_REPLY = 0x67446698, STRUCTURED_REPLY = 0x668e33ef;
    static final int OPT_GO = 7, REP_ACK = 1, REP_INFO = 3, REP_ERR_UNSUP = (1 << 31) | 1;
    static final int FLAGS = 1 | 1 << 2 | 1 << 3 | 1 << 8; // has flags, flush, FUA, multi-conn
    static final int CMD_READ = 0, CMD_WRITE = 1, CMD_DISC = 2;
    static final int MIB = 1 << 20;

    /** What a connection does once negotiated; connection 0 is the store's own, 1 the first queue's. */
    enum Mode { NORMAL, DRIBBLE, SLOW_READER, WRONG_COOKIE, BAD_MAGIC, STRUCTURED, CLOSE_IN_READ_DATA }

    /** An NBD server on loopback TCP over a RAM disk; connection {@code i} behaves as {@code modes[i]} (later ones NORMAL). */
    static final class FakeServer implements AutoCloseable {
        final ServerSocket listener = new ServerSocket();
        final byte[] disk;
        final Mode[] modes;
        final AtomicInteger connections = new AtomicInteger();
        final List<Socket> sockets = new ArrayList<>();

        FakeServer(int size, Mode... modes) throws IOException {
            this.disk = new byte[size];
            this.modes = modes;
            listener.setReceiveBufferSize(64 << 10); // fixed (no autotuning): the client's big writes cannot all fit
            listener.bind(new java.net.InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 16);
            Thread.ofPlatform().daemon().name("fake-nbd-accept").start(this::accept);
        }

        String uri() {
            return "nbd://127.0.0.1:" + listener.getLocalPort() + "/";
        }

        private void accept() {
            try {
                while (true) {
                    Socket s = listener.accept();
                    s.setTcpNoDelay(true);
                    synchronized (sockets) {
                        sockets.add(s);
                    }
                    int n = connections.getAndIncrement();
                    Mode m = n < modes.length ? modes[n] : Mode.NORMAL;
                    Thread.ofPlatform().daemon().name("fake-nbd-" + n).start(() -> serve(s, m));
                }
            } catch (IOException closed) {
                // the test is over
            }
        }

        private void serve(Socket s, Mode mode) {
            try (s) {
                DataInputStream in = new DataInputStream(new java.io.BufferedInputStream(s.getInputStream()));
                DataOutputStream out = new DataOutputStream(new BufferedOutputStream(s.getOutputStream(), 1 << 20));
                handshake(in, out);
                int served = 0;
                while (true) {
                    if (mode == Mode.SLOW_READER) {
                        Thread.sleep(20); // the client's sends pile up: its socket fills (5 ms let a slow poster keep up now and then)
                    }
                    int magic = in.readInt();
                    in.readShort(); // flags
                    int command = in.readShort();
                    long cookie = in.readLong();
                    long offset = in.readLong();
                    int length = in.readInt();
                    if (magic != REQUEST_MAGIC || command == CMD_DISC) {
                        return;
                    }
                    byte[] data = null;
                    if (command == CMD_WRITE) {
                        data = new byte[length];
                        in.readFully(data);
                        synchronized (disk) {
                            System.arraycopy(data, 0, disk, (int) offset, length);
                        }
                    } else if (command == CMD_READ) {
                        data = new byte[length];
                        synchronized (disk) {
                            System.arraycopy(disk, (int) offset, data, 0, length);
                        }
                    }
                    served++;
                    int replyMagic = mode == Mode.BAD_MAGIC ? 0x12345678 : mode == Mode.STRUCTURED ? STRUCTURED_REPLY : SIMPLE_REPLY;
                    long replyCookie = mode == Mode.WRONG_COOKIE ? cookie ^ 0x5a5a_0000_0000L : cookie;
                    java.nio.ByteBuffer reply = java.nio.ByteBuffer.allocate(16 + (command == CMD_READ ? length : 0));
                    reply.putInt(replyMagic).putInt(0).putLong(replyCookie);
                    if (command == CMD_READ) {
                        reply.put(data);
                    }
                    byte[] bytes = reply.array();
                    if (mode == Mode.CLOSE_IN_READ_DATA && command == CMD_READ) {
                        out.write(bytes, 0, 16 + length / 2);
                        out.flush();
                        return; // gone in the middle of the data
                    }
                    if (mode == Mode.DRIBBLE) {
                        dribble(out, bytes, served);
                    } else {
                        out.write(bytes);
                        out.flush();
                    }
                }
            } catch (IOException | InterruptedException e) {
                // the client went away
            }
        }

        /** Writes {@code bytes} in pieces of 1 to 13 bytes (and some bigger), each flushed, with pauses. */
        private static void dribble(OutputStream out, byte[] bytes, int seed) throws IOException, InterruptedException {
            int at = 0;
            int k = seed;
            while (at < bytes.length) {
                k = k * 1103515245 + 12345;
                int piece = (k >>> 16) % 5 == 0 ? 1000 + ((k >>> 8) & 1023) : 1 + ((k >>> 16) & 0xffff) % 13;
                int n = Math.min(piece, bytes.length - at);
                out.write(bytes, at, n);
                out.flush();
                at += n;
                if (((k >>> 20) & 3) == 0) {
                    Thread.sleep(1);
                }
            }
        }

        private void handshake(DataInputStream in, DataOutputStream out) throws IOException {
            out.writeLong(NBDMAGIC);
            out.writeLong(IHAVEOPT);
            out.writeShort(1 | 2); // fixed newstyle, no zeroes
            out.flush();
            in.readInt(); // client flags
            while (true) {
                in.readLong(); // IHAVEOPT
                int option = in.readInt();
                int length = in.readInt();
                in.skipNBytes(length);
                if (option != OPT_GO) {
                    optionReply(out, option, REP_ERR_UNSUP, new byte[0]);
                    continue;
                }
                byte[] info = java.nio.ByteBuffer.allocate(12).putShort((short) 0).putLong(disk.length).putShort((short) FLAGS).array();
                optionReply(out, option, REP_INFO, info);
                optionReply(out, option, REP_ACK, new byte[0]);
                out.flush();
                return;
            }
        }

        private static void optionReply(DataOutputStream out, int option, int type, byte[] data) throws IOException {
            out.writeLong(OPTION_REPLY);
            out.writeInt(option);
            out.writeInt(type);
            out.writeInt(data.length);
            out.write(data);
        }

        byte[] disk(long offset, int length) {
            synchronized (disk) {
                return java.util.Arrays.copyOfRange(disk, (int) offset, (int) offset + length);
            }
        }

        @Override
        public void close() throws IOException {
            listener.close();
            synchronized (sockets) {
                for (Socket s : sockets) {
                    s.close();
                }
            }
        }
    }

    static NbdStore open(FakeServer server) throws Exception {
        return NbdStore.open(NbdStore.Options.of(NbdUri.parse(server.uri()), null));
    }

    @Test
    void shouldReadCorrectDataFromRepliesThatArriveAFewBytesAtATime() throws Exception {
        try (FakeServer server = new FakeServer(8 * MIB, Mode.NORMAL, Mode.DRIBBLE)) {
            NbdStore store = open(server);
            try (BlkRig rig = BlkRig.serve(store, 1).start()) {
                assertEquals(1, store.queueConnections(), "the queue has a connection of its own");
                byte[] data = pattern(MIB, 5);
                System.arraycopy(data, 0, server.disk, 0, data.length);
                // Reads of many sizes, several in flight, each split over three guest buffers.
                int[] lengths = {512, 4096, 4096 + 512, 65536, 3 * 4096};
                BlkRig.Area a = rig.area(2 * MIB);
                long[] got = new long[lengths.length];
                long[] status = new long[lengths.length];
                long sector = 0;
                for (int i = 0; i < lengths.length; i++) {
                    int len = lengths[i];
                    long header = a.header(IN, sector);
                    got[i] = a.room(len);
                    status[i] = a.status();
                    int first = 512, second = len > 1024 ? len / 2 - 512 : 0;
                    rig.post(0, Buffer.readable(header, 16), Buffer.writable(got[i], first),
                            Buffer.writable(got[i] + first, second), Buffer.writable(got[i] + first + second, len - first - second),
                            Buffer.writable(status[i], 1));
                    sector += len / 512;
                }
                Map<Integer, Integer> used = rig.awaitAll(0, lengths.length);
                assertEquals(lengths.length, used.size());
                sector = 0;
                for (int i = 0; i < lengths.length; i++) {
                    assertEquals(OK, a.read(status[i], 1)[0], "status of read " + i);
                    assertArrayEquals(java.util.Arrays.copyOfRange(data, (int) sector * 512, (int) sector * 512 + lengths[i]),
                            a.read(got[i], lengths[i]), "read " + i);
                    sector += lengths[i] / 512;
                }
                assertTrue(store.partialReplies() > 0, "replies came in pieces: " + store.partialReplies());
                assertEquals(0, store.protocolErrors());
            }
        }
    }

    @Test
    void shouldSendBigWritesWholeWhenTheSocketTakesThemInPieces() throws Exception {
        int writes = 12, length = MIB;
        try (FakeServer server = new FakeServer(16 * MIB, Mode.NORMAL, Mode.SLOW_READER)) {
            NbdStore store = open(server);
            try (BlkRig rig = BlkRig.serve(store, 1).start()) {
                // Twelve 1 MiB writes in flight, each in four guest buffers: more than the socket holds.
                for (int i = 0; i < writes; i++) {
                    BlkRig.Area a = rig.area(length + 1024);
                    long header = a.header(OUT, (long) i * (length / 512));
                    long data = a.put(pattern(length, i + 1));
                    long status = a.status();
                    int q = length / 4;
                    rig.post(0, Buffer.readable(header, 16), Buffer.readable(data, q), Buffer.readable(data + q, q),
                            Buffer.readable(data + 2 * q, q), Buffer.readable(data + 3 * q, q), Buffer.writable(status, 1));
                }
                Map<Integer, Integer> used = rig.awaitAll(0, writes);
                assertTrue(used.values().stream().allMatch(n -> n == 1), "all OK: " + used);
                for (int i = 0; i < writes; i++) {
                    assertArrayEquals(pattern(length, i + 1), server.disk((long) i * length, length), "write " + i + " on the server");
                }
                assertTrue(store.partialSends() > 0, "the socket took the writes in pieces: " + store.partialSends());
                assertArrayEquals(pattern(length, 3), rig.read(0, 2L * (length / 512), length));
            }
        }
    }

    /** Replies a hostile server makes up: each fails what was in flight, and the queue serves on a new connection. */
    @Test
    void shouldFailWithAnIoErrorAndReconnectWhenTheServerRepliesToACookieNeverSent() throws Exception {
        hostile(Mode.WRONG_COOKIE);
    }

    @Test
    void shouldFailWithAnIoErrorAndReconnectOnABadReplyMagic() throws Exception {
        hostile(Mode.BAD_MAGIC);
    }

    @Test
    void shouldFailWithAnIoErrorAndReconnectOnAStructuredReplyNotNegotiated() throws Exception {
        hostile(Mode.STRUCTURED);
    }

    private void hostile(Mode mode) throws Exception {
        try (FakeServer server = new FakeServer(4 * MIB, Mode.NORMAL, mode)) {
            NbdStore store = open(server);
            try (BlkRig rig = BlkRig.serve(store, 1).start()) {
                byte[] data = pattern(8192, 7);
                System.arraycopy(data, 0, server.disk, 4096, data.length);
                assertEquals(new Completion(1, IOERR), rig.transfer(0, IN, 8, 8192), "the made-up reply failed the read");
                assertEquals(1, store.protocolErrors());
                // The next connection behaves: the same read now works, the backend never stopped.
                assertArrayEquals(data, rig.read(0, 8, 8192));
                assertTrue(store.reconnects() >= 1, "reconnected");
            }
        }
    }

    @Test
    void shouldSendTheReadAgainWhenTheServerClosesInTheMiddleOfItsData() throws Exception {
        try (FakeServer server = new FakeServer(4 * MIB, Mode.NORMAL, Mode.CLOSE_IN_READ_DATA)) {
            NbdStore store = open(server);
            try (BlkRig rig = BlkRig.serve(store, 1).start()) {
                byte[] data = pattern(65536, 9);
                System.arraycopy(data, 0, server.disk, 0, data.length);
                assertArrayEquals(data, rig.read(0, 0, data.length), "the guest sees the data, not the outage");
                assertEquals(0, store.protocolErrors());
                assertTrue(store.resent() >= 1, "sent again: " + store.resent());
            }
        }
    }
}
