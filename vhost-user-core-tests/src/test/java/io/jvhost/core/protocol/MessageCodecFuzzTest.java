package io.jvhost.core.protocol;

import com.code_intelligence.jazzer.junit.FuzzTest;
import io.jvhost.core.sys.Fd;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

import static io.jvhost.core.protocol.MessageType.*;

/**
 * Coverage-guided fuzzing (Jazzer) of the pure vhost-user message codec: bytes as a frontend sends
 * them, framed into 12-byte headers ({@link Header#decode}, {@link Header#checkRequest}) and
 * payloads, each payload decoded by the record its request names ({@link VringState},
 * {@link VringAddress}, {@link VringFd}, {@link MemoryTable}, {@link RegionDescription},
 * {@link LogBase}, {@link ConfigRequest}, {@link InflightRequest}, {@link Payload#decodeU64}) and
 * described by {@link Trace}. No session, no fds, no memory: what the backend does with a decoded
 * message is {@code runtime.SessionFuzzTest}'s business, over the same input format.
 *
 * <p>Input: repeated {fd count (low 4 bits, at most {@link MemoryTable#MAX_REGIONS} + 1), 12-byte
 * header, payload of the header's size}, up to 16 messages. A finding is any exception but a
 * {@link ProtocolException}; a header refused or accepted against the rules (version 1, known
 * flags, not a reply, at most {@link Header#MAX_PAYLOAD} bytes), or refused without being fatal;
 * a header that does not encode back to its bytes; a decoded record that breaks its own rules (size,
 * alignment, fd count, ranges); a record whose encoding does not decode back to the same encoding.
 *
 * <p>Kept inputs: {@code src/test/resources/io/jvhost/core/protocol/MessageCodecFuzzTestInputs/};
 * every {@code mvn verify} replays them, {@code scripts/fuzz-coverage.sh} fuzzes for more.
 */
class MessageCodecFuzzTest {
    private static final int MAX_MESSAGES = 16, MAX_FDS = MemoryTable.MAX_REGIONS + 1;

    @FuzzTest
    void shouldDecodeOrRefuseEveryMessageWhateverItsBytes(byte[] input) {
        ByteBuffer in = ByteBuffer.wrap(input).order(ByteOrder.LITTLE_ENDIAN);
        for (int n = 0; n < MAX_MESSAGES && in.remaining() > Header.SIZE; n++) {
            int fdCount = Math.min(MAX_FDS, in.get() & 0xF);
            byte[] headerBytes = new byte[Header.SIZE];
            in.get(headerBytes);
            Header h = Header.decode(headerBytes);
            checkHeaderEncoding(h, headerBytes);
            if (!checkRequest(h)) {
                return; // the connection drops on a bad header
            }
            if (in.remaining() < h.size()) {
                return; // the frame is not complete: the connection waits for more bytes
            }
            byte[] payload = new byte[(int) h.size()];
            in.get(payload);
            Trace.describe(new Message(h.request(), h.flags(), payload, new Fd[fdCount])); // the debug trace reads every payload too
            try {
                Object decoded = decode(h.request(), payload, fdCount);
                if (decoded != null) {
                    checkRecord(h.request(), decoded, payload, fdCount);
                }
            } catch (ProtocolException e) {
                // refused: the request is nacked (or the connection dropped); nothing else to check
            }
        }
    }

    // ---- adapter: the only calls into the code under test ----

    /** The record {@code request}'s payload decodes to (a Long for u64 payloads), null for none. */
    static Object decode(int request, byte[] p, int fds) throws ProtocolException {
        return switch (request) {
            case SET_FEATURES, SET_PROTOCOL_FEATURES, SET_STATUS, NET_SET_MTU, SEND_RARP -> Payload.decodeU64(p, fds);
            case SET_MEM_TABLE -> MemoryTable.decode(p, fds);
            case ADD_MEM_REG -> RegionDescription.decodeAdd(p, fds);
            case REM_MEM_REG -> RegionDescription.decodeRemove(p, fds);
            case SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ENABLE -> VringState.decode(p, fds);
            case SET_VRING_ADDR -> VringAddress.decode(p, fds);
            case SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR -> VringFd.decode(p, fds);
            case GET_CONFIG, SET_CONFIG -> ConfigRequest.decode(p, fds);
            case SET_LOG_BASE -> LogBase.decode(p, fds);
            case GET_INFLIGHT_FD -> InflightRequest.decodeGet(p, fds);
            case SET_INFLIGHT_FD -> InflightRequest.decodeSet(p, fds);
            default -> {
                Payload.expect(p, fds, 0, 0); // GET_FEATURES, SET_OWNER, ... : empty, or refused
                yield null;
            }
        };
    }

    /** {@link Header#checkRequest}: true when accepted; a refusal must be fatal. */
    static boolean checkRequest(Header h) {
        boolean valid = (h.flags() & Header.VERSION_MASK) == Header.VERSION && (h.flags() & ~0xF) == 0
                && (h.flags() & Header.REPLY) == 0 && h.size() <= Header.MAX_PAYLOAD;
        try {
            h.checkRequest();
        } catch (ProtocolException e) {
            if (valid) {
                throw new AssertionError("good header refused: " + h, e);
            }
            if (!e.fatal()) {
                throw new AssertionError("bad header refused but not fatal: " + h, e);
            }
            return false;
        }
        if (!valid) {
            throw new AssertionError("bad header accepted: " + h);
        }
        return true;
    }

    static void checkHeaderEncoding(Header h, byte[] bytes) {
        if (h.size() < 0 || h.size() > 0xFFFF_FFFFL) {
            throw new AssertionError("size out of u32: " + h);
        }
        byte[] again = new byte[Header.SIZE];
        Header.encode(MemorySegment.ofArray(again), h.request(), h.flags(), (int) h.size());
        if (!Arrays.equals(again, bytes) || !Header.decode(again).equals(h)) {
            throw new AssertionError("header " + h + " does not encode back to its bytes");
        }
    }

    // ---- oracles ----

    private static void checkRecord(int request, Object decoded, byte[] payload, int fds) throws ProtocolException {
        String name = MessageType.name(request);
        byte[] encoded;
        switch (decoded) {
            case Long v -> {
                expect(payload.length == 8 && fds == 0, name, "u64 of " + payload.length + " bytes, " + fds + " fds");
                encoded = Payload.encodeU64(v);
            }
            case VringState s -> {
                expect(payload.length == VringState.SIZE && fds == 0, name, "vring state of " + payload.length + " bytes");
                expect(s.index() >= 0 && s.index() <= 0xFFFF_FFFFL && s.num() >= 0 && s.num() <= 0xFFFF_FFFFL, name, s.toString());
                encoded = VringState.encode((int) s.index(), (int) s.num());
            }
            case VringAddress a -> {
                expect(payload.length == VringAddress.SIZE && fds == 0, name, "vring address of " + payload.length + " bytes");
                expect((a.flags() & ~VringAddress.F_LOG) == 0, name, "unknown flags accepted: " + a);
                expect((a.descHva() & 15) == 0 && (a.availHva() & 1) == 0 && (a.usedHva() & 3) == 0, name,
                        "misaligned ring accepted: " + a);
                encoded = a.encode();
            }
            case VringFd f -> {
                expect(payload.length == 8 && fds == (f.noFd() ? 0 : 1), name, f + " with " + fds + " fds");
                expect(f.index() >= 0 && f.index() <= VringFd.INDEX_MASK, name, f.toString());
                encoded = f.encode();
            }
            case MemoryTable t -> {
                expect(t.regions().size() == fds && fds <= MemoryTable.MAX_REGIONS, name, t.regions().size() + " regions, " + fds + " fds");
                expect(payload.length >= 8 + RegionDescription.SIZE * t.regions().size()
                        && payload.length <= 8 + RegionDescription.SIZE * MemoryTable.MAX_REGIONS, name, payload.length + " bytes");
                t.regions().forEach(r -> checkRegion(name, r));
                encoded = t.encode();
            }
            case RegionDescription r -> {
                expect(payload.length == RegionDescription.SINGLE_REGION_SIZE
                        && (request == ADD_MEM_REG ? fds == 1 : fds <= 1), name, payload.length + " bytes, " + fds + " fds");
                checkRegion(name, r);
                encoded = r.encodeSingle();
            }
            case LogBase l -> {
                expect(payload.length == LogBase.SIZE && fds == 1, name, payload.length + " bytes, " + fds + " fds");
                expect(l.size() > 0 && l.offset() >= 0 && l.offset() + l.size() > 0, name, l.toString());
                encoded = l.encode();
            }
            case ConfigRequest c -> {
                expect(fds == 0 && c.offset() >= 0 && c.size() >= 0 && c.offset() + c.size() <= ConfigRequest.MAX_CONFIG
                        && c.data().length == c.size() && payload.length == ConfigRequest.HEADER_SIZE + c.size(), name,
                        c.offset() + "+" + c.size() + " in " + payload.length + " bytes");
                encoded = c.encode();
                expect(Arrays.equals(encoded, payload), name, "config request does not encode back to its bytes");
                byte[] reply = c.reply(new byte[ConfigRequest.MAX_CONFIG / 2]);
                expect(reply.length == ConfigRequest.HEADER_SIZE + c.size(), name, "reply of " + reply.length + " bytes");
            }
            case InflightRequest r -> {
                expect(payload.length >= InflightRequest.PACKED_SIZE && payload.length <= InflightRequest.SIZE
                        && fds == (request == SET_INFLIGHT_FD ? 1 : 0), name, payload.length + " bytes, " + fds + " fds");
                expect(r.queues() >= 1 && r.queueSize() >= 1 && Integer.bitCount(r.queueSize()) == 1
                        && r.queueSize() <= InflightRequest.MAX_QUEUE_SIZE, name, r.toString());
                encoded = r.encode();
            }
            default -> throw new AssertionError(name + " decoded to " + decoded.getClass());
        }
        // What the record encodes to decodes back to a record of the same encoding.
        int fdsAgain = decoded instanceof MemoryTable t ? t.regions().size() : fds;
        Object again = decode(request, encoded, fdsAgain);
        byte[] reencoded = switch (again) {
            case Long v -> Payload.encodeU64(v);
            case VringState s -> VringState.encode((int) s.index(), (int) s.num());
            case VringAddress a -> a.encode();
            case VringFd f -> f.encode();
            case MemoryTable t -> t.encode();
            case RegionDescription r -> r.encodeSingle();
            case LogBase l -> l.encode();
            case ConfigRequest c -> c.encode();
            case InflightRequest r -> r.encode();
            default -> throw new AssertionError(name + " decoded again to " + again);
        };
        expect(Arrays.equals(encoded, reencoded), name, decoded + " does not round-trip through its encoding");
        if (!(decoded instanceof ConfigRequest)) {
            expect(again.equals(decoded), name, decoded + " decoded back as " + again);
        }
    }

    private static void checkRegion(String name, RegionDescription r) {
        expect(r.size() > 0, name, "empty or huge region accepted: " + r);
        expect(Long.compareUnsigned(r.gpa() + r.size() - 1, r.gpa()) >= 0
                && Long.compareUnsigned(r.hva() + r.size() - 1, r.hva()) >= 0, name, "wrapping region accepted: " + r);
        expect(r.mmapOffset() >= 0 && r.mmapOffset() + r.size() > 0, name, "file range past 2^63 accepted: " + r);
    }

    private static void expect(boolean ok, String name, String what) {
        if (!ok) {
            throw new AssertionError(name + ": " + what);
        }
    }
}
