package io.jvhost.core.runtime;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.protocol.Header;
import io.jvhost.core.protocol.Message;
import io.jvhost.core.protocol.ProtocolException;
import io.jvhost.core.protocol.Trace;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.Mappings;
import io.jvhost.core.sys.NativeException;
import io.jvhost.testkit.TestDevice;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

import static io.jvhost.core.protocol.MessageType.*;

/**
 * Coverage-guided fuzzing (Jazzer) of a backend session: bytes as a frontend sends them, framed into
 * 12-byte headers ({@link Header#decode}, {@link Header#checkRequest}) and payloads, each message
 * decoded, validated and applied by {@link Session#handle}. The pure codec alone is
 * {@code protocol.MessageCodecFuzzTest}, over the same input format.
 * Pure: no socket and no poller. SET_LOG_BASE and SET_INFLIGHT_FD carry fds of a small memfd, which
 * they may map; every other message's fds are eventfds, which no memory region can map, so the
 * memory table stays empty and no queue ever starts (a message that waited for a poller would show
 * up as one never resumed).
 *
 * <p>Input: repeated {fd count (low 2 bits, at most 2), 12-byte header, payload of the header's
 * size}, up to 16 messages. A finding is any exception, a message the session handled by an
 * unexpected exception ({@link Backend#controlFailures()}), a reply where none is due (an ack only with
 * NEED_REPLY once REPLY_ACK is negotiated) or none where
 * one is due, a reply of the wrong size, a message never resumed, or an fd still open after the
 * session closed.
 *
 * <p>Kept inputs: {@code src/test/resources/io/jvhost/core/runtime/SessionFuzzTestInputs/};
 * every {@code mvn verify} replays them, {@code scripts/fuzz-coverage.sh} fuzzes for more.
 */
class SessionFuzzTest {
    private static final int MAX_MESSAGES = 16, MAX_FDS = 2;
    private static final long SHARED_FILE = 64 * 1024;
    private static Backend backend;
    private static Fd sharedFile;

    @BeforeAll
    static void createBackend() throws NativeException {
        // Pollers are created, never started: nothing in this target may need one.
        // INFLIGHT_SHMFD offered too, so GET/SET_INFLIGHT_FD get past the feature check.
        TestDevice device = TestDevice.withQueues(2).protocolFeatures(ProtocolFeatures.bit(ProtocolFeatures.INFLIGHT_SHMFD)).build();
        backend = new Backend("codec-fuzz", device, BackendOptions.DEFAULT, Runnable::run);
        sharedFile = Mappings.memfd("codec-fuzz-shared", SHARED_FILE);
    }

    @AfterAll
    static void closeBackend() {
        backend.close();
        sharedFile.close();
    }

    @FuzzTest
    void shouldReplyRefuseOrDropEveryMessageWhateverItsBytes(byte[] input) throws NativeException {
        Recorder out = new Recorder();
        Session session = new Session("codec-fuzz", backend, out);
        List<Fd> given = new ArrayList<>();
        long failuresBefore = backend.controlFailures();
        try {
            ByteBuffer in = ByteBuffer.wrap(input).order(ByteOrder.LITTLE_ENDIAN);
            for (int n = 0; n < MAX_MESSAGES && in.remaining() > Header.SIZE && !out.dropped; n++) {
                int fdCount = Math.min(MAX_FDS, in.get() & 3);
                byte[] headerBytes = new byte[Header.SIZE];
                in.get(headerBytes);
                Header h;
                try {
                    h = Header.decode(headerBytes).checkRequest();
                } catch (ProtocolException e) {
                    return; // the connection drops on a bad header
                }
                if (in.remaining() < h.size()) {
                    return; // the frame is not complete: the connection waits for more bytes
                }
                byte[] payload = new byte[(int) h.size()];
                in.get(payload);
                Fd[] fds = new Fd[fdCount];
                boolean mappable = h.request() == SET_LOG_BASE || h.request() == SET_INFLIGHT_FD;
                for (int i = 0; i < fdCount; i++) {
                    fds[i] = mappable ? sharedFile.dup() : EventFd.create();
                    given.add(fds[i]);
                }
                Message m = new Message(h.request(), h.flags(), payload, fds);
                Trace.describe(m); // the debug trace decodes every payload too
                out.start(m);
                long refusedBefore = session.messagesRefused();
                long ackFeature = m.request() == SET_PROTOCOL_FEATURES && payload.length == 8
                        ? ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN).getLong() & ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK)
                        : -1;
                boolean[] resumed = {false};
                deliver(session, m, () -> resumed[0] = true);
                if (!resumed[0]) {
                    throw new AssertionError(m.name() + " was never resumed (it waits for a poller?)");
                }
                if (ackFeature >= 0 && session.messagesRefused() == refusedBefore) {
                    out.replyAck = ackFeature != 0; // REPLY_ACK as the accepted SET_PROTOCOL_FEATURES says
                }
                out.check(m);
                if (backend.controlFailures() != failuresBefore) {
                    throw new AssertionError(m.name() + " failed with an unexpected exception (see the log)");
                }
            }
        } finally {
            boolean[] closed = {false};
            session.close(() -> closed[0] = true);
            if (!closed[0]) {
                throw new AssertionError("the session did not close at once");
            }
            for (Fd fd : given) {
                if (fd.isOpen()) {
                    throw new AssertionError("fd " + fd + " still open after the session closed");
                }
            }
        }
    }

    // ---- adapter: the only call into the code under test ----

    /** {@link Session#handle} decodes each payload with the protocol codec, validates and applies it. */
    static void deliver(Session session, Message m, Runnable resume) {
        session.handle(m, resume);
    }

    // ---- what the connection would see ----

    /** Replies and drops of one message, checked against what the protocol allows. */
    private static final class Recorder implements Session.Output {
        boolean dropped;
        /** Whether REPLY_ACK is negotiated once the current message was handled: NEED_REPLY is acked only then. */
        boolean replyAck;
        private final List<byte[]> replies = new ArrayList<>();
        private final List<int[]> replyFds = new ArrayList<>();
        private boolean droppedNow;

        void start(Message m) {
            replies.clear();
            replyFds.clear();
            droppedNow = false;
        }

        @Override
        public void reply(int request, byte[] payload, int[] fds) {
            if (dropped) {
                return; // a dropped connection sends nothing
            }
            replies.add(payload);
            replyFds.add(fds);
        }

        @Override
        public void drop(String reason) {
            droppedNow = !dropped;
            dropped = true;
        }

        /**
         * A request with a reply of its own gets it (or the connection drops); any other request
         * is acked when it carries NEED_REPLY and REPLY_ACK is negotiated (spec, "REPLY_ACK"),
         * and gets no reply otherwise.
         */
        void check(Message m) {
            int request = m.request();
            if (replies.size() > 1) {
                throw new AssertionError(m.name() + " got " + replies.size() + " replies");
            }
            if (hasOwnReply(request)) {
                if (replies.isEmpty() && !droppedNow) {
                    throw new AssertionError(m.name() + " neither replied nor dropped the connection");
                }
                if (!replies.isEmpty()) {
                    checkOwnReply(m, replies.get(0), replyFds.get(0));
                }
            } else if (m.needsReply() && replyAck) {
                if (replies.isEmpty() && !droppedNow) {
                    throw new AssertionError(m.name() + " with NEED_REPLY got no reply");
                }
                if (!replies.isEmpty()) {
                    byte[] r = replies.get(0);
                    long v = r.length == 8 ? ByteBuffer.wrap(r).order(ByteOrder.LITTLE_ENDIAN).getLong() : -1;
                    if (v != 0 && v != 1) {
                        throw new AssertionError(m.name() + " NEED_REPLY answer of " + r.length + " bytes, value " + v);
                    }
                    noFds(m, replyFds.get(0));
                }
            } else if (!replies.isEmpty()) {
                throw new AssertionError(m.name() + " got a reply without NEED_REPLY and REPLY_ACK");
            }
        }

        private static void checkOwnReply(Message m, byte[] r, int[] fds) {
            int expected = switch (m.request()) {
                case GET_CONFIG -> m.size(); // same offset, size and flags, then that many bytes
                case GET_INFLIGHT_FD -> 24;
                case SET_LOG_BASE -> 0;
                default -> 8;
            };
            if (r.length != expected) {
                throw new AssertionError(m.name() + " reply of " + r.length + " bytes, expected " + expected);
            }
            if (m.request() == GET_INFLIGHT_FD) {
                if (fds == null || fds.length != 1) {
                    throw new AssertionError("GET_INFLIGHT_FD reply without its fd");
                }
            } else {
                noFds(m, fds);
            }
        }

        private static void noFds(Message m, int[] fds) {
            if (fds != null && fds.length != 0) {
                throw new AssertionError(m.name() + " reply carries " + fds.length + " fds");
            }
        }
    }
}
