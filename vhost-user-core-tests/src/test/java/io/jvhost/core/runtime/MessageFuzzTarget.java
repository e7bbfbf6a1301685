package io.jvhost.core.runtime;

import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.protocol.Header;
import static io.jvhost.core.protocol.MessageType.*;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.testkit.BackendFixture;
import io.jvhost.testkit.Payloads;
import io.jvhost.testkit.Payloads.Region;
import io.jvhost.testkit.TestDevice;
import io.jvhost.testkit.Traffic;
import io.jvhost.testkit.fuzz.BackendHealth;
import io.jvhost.testkit.fuzz.Features;
import io.jvhost.testkit.fuzz.FuzzInput;
import io.jvhost.testkit.fuzz.FuzzTarget;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.Arrays;

/**
 * The message decoder and the {@link io.jvhost.core.runtime.Session} state machine of a real backend (a two-queue
 * {@link TestDevice}) over a real socket with real fds: an input becomes one connection that
 * starts from nothing, from QEMU's handshake, or from a running queue 0, then sends a sequence of
 * up to sixteen messages, each of any request code, flags, payload shaped for the request (memory
 * tables with regions past guest RAM, vring addresses inside and outside it, lying sizes) or not,
 * and any number of memfds or eventfds; then traffic on queue 0 whatever state it is in.
 *
 * <p>A failure is a message that failed with an unexpected exception, an exception escaping a
 * poller, a poller thread dying, or the backend not answering GET_FEATURES on the next connection.
 * Guest RAM is 1 MiB in two regions; everything above is unmapped.
 */
public final class MessageFuzzTarget implements FuzzTarget {
    static final long RAM = 1 << 20;
    private static final Duration REPLY_WAIT = Duration.ofMillis(200);
    private static final int[] REQUESTS = {SET_MEM_TABLE, SET_VRING_ADDR, SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE,
            SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ENABLE, SET_FEATURES, SET_PROTOCOL_FEATURES, ADD_MEM_REG,
            REM_MEM_REG, SET_STATUS, GET_CONFIG, SET_CONFIG, SET_LOG_BASE, GET_INFLIGHT_FD, SET_INFLIGHT_FD,
            SET_OWNER, RESET_OWNER, RESET_DEVICE, GET_FEATURES, GET_PROTOCOL_FEATURES, SET_VRING_ERR, GET_STATUS,
            SET_BACKEND_REQ_FD, SET_LOG_FD, NET_SET_MTU, SEND_RARP, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, VRING_KICK,
            IOTLB_MSG, SET_VRING_ENDIAN, POSTCOPY_ADVISE, 0, 41};

    private BackendFixture fx;
    private GuestRam ram;
    private DriverQueue q;
    private Fd eventFd;
    private BackendHealth health;

    public MessageFuzzTarget() throws Exception {
        open();
    }

    private void open() throws Exception {
        fx = BackendFixture.start(TestDevice.withQueues(2).build());
        ram = new GuestRam(RAM, RAM / 2);
        q = new DriverQueue(ram, 0, 64);
        eventFd = EventFd.create();
        health = BackendHealth.of(fx.backend());
    }

    @Override
    public String name() {
        return "messages";
    }

    @Override
    public int maxLength() {
        return 1024;
    }

    @Override
    public void run(byte[] input, Features features) throws Exception {
        FuzzInput in = new FuzzInput(input);
        int start = in.below(4);
        boolean running = false;
        try (Frontend f = fx.connect()) {
            if (start <= 1) {
                q.startAt(0);
                f.startLikeQemu(f.handshakeLikeQemu(2), ram, q);
                running = true;
            } else if (start == 2) {
                f.handshakeLikeQemu(2);
            }
            // Only now the short wait: the start is answered, however long a loaded machine takes.
            f.replyTimeout(REPLY_WAIT);
            int messages = 1 + in.below(16);
            for (int m = 0; m < messages; m++) {
                int request = in.below(16) == 15 ? in.u32() : in.pick(REQUESTS);
                int flags = in.choose(Header.VERSION | Header.NEED_REPLY, Header.VERSION, 0, Header.VERSION | Header.REPLY,
                        2, 3, 0xF, Header.NEED_REPLY);
                byte[] payload = in.below(8) == 7 ? in.bytes(in.below(64)) : payload(request, in);
                int lie = in.below(16) == 15 ? in.pick(-1, 1, -8, 8, 4096, -payload.length, Integer.MIN_VALUE) : 0;
                Fd[] fds = fds(request, in);
                String name = request >= 0 && request <= GET_STATUS ? MessageType.name(request) : "other";
                byte[] bytes = ByteBuffer.allocate(12 + payload.length).order(ByteOrder.LITTLE_ENDIAN).putInt(request)
                        .putInt(flags).putInt(payload.length + lie).put(payload).array();
                try {
                    if (lie == 0) {
                        f.send(request, flags, payload, fds); // follows REPLY_ACK through SET_PROTOCOL_FEATURES
                    } else {
                        f.sendRaw(bytes, fds);
                    }
                    // Acks come only with REPLY_ACK negotiated; a refused SET_PROTOCOL_FEATURES is
                    // taken as accepted, and a reply that does not come just times out.
                    if (lie == 0 && (hasOwnReply(request) || ((flags & Header.NEED_REPLY) != 0 && f.replyAck()))) {
                        Frontend.Reply r = f.readReply();
                        features.hit(name + "-replied-" + (r.payload().length == 8 && r.u64() == 0 ? "0" : "x"));
                        for (Fd fd : r.fds()) {
                            fd.close();
                        }
                    } else {
                        features.hit(name + "-sent");
                    }
                } catch (IOException e) {
                    features.hit(name + (f.isClosedByBackend(0) ? "-dropped" : "-silent"));
                    if (f.isClosedByBackend(0)) {
                        break;
                    }
                }
            }
            if (running) {
                q.post(Traffic.request(ram, Traffic.pattern(16, 1)).buffers());
            }
        }
        fx.awaitSessionsEnded(); // the next frontend is served, so the backend survived and cleaned up
        health.check();
        if (fx.backend().queue(0).isBroken()) {
            features.hit("queue-broken");
        }
    }

    private Fd[] fds(int request, FuzzInput in) {
        int kind = in.below(8);
        int n = switch (kind) {
            case 0, 1, 2, 3 -> switch (request) {
                case SET_MEM_TABLE -> 2;
                case ADD_MEM_REG, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR, SET_LOG_BASE, SET_INFLIGHT_FD,
                     SET_BACKEND_REQ_FD, SET_LOG_FD -> 1;
                default -> 0;
            };
            case 4 -> 0;
            case 5 -> 1;
            default -> in.below(10);
        };
        Fd[] fds = new Fd[n];
        boolean memory = switch (request) {
            case SET_MEM_TABLE, ADD_MEM_REG, SET_LOG_BASE, SET_INFLIGHT_FD -> kind != 6;
            default -> kind == 6;
        };
        Arrays.fill(fds, memory ? ram.fd() : eventFd);
        return fds;
    }

    private long hva(FuzzInput in) {
        return switch (in.below(8)) {
            case 0 -> q.descHva();
            case 1 -> q.availHva();
            case 2 -> q.usedHva();
            case 3 -> GuestRam.HVA_BASE + in.u32() % (2 * RAM);
            case 4 -> GuestRam.HVA_BASE + RAM - in.below(64);
            case 5 -> q.descHva() + in.pick(1, 2, 4, 8);
            case 6 -> -1L - in.u16();
            default -> in.u64();
        };
    }

    private Region region(FuzzInput in) {
        long gpa = in.choose(0, RAM / 2, RAM, 4096, -4096L, 1L << 62, RAM / 2 + 4096);
        long size = in.choose(RAM / 2, RAM, 4096, 0, RAM / 2 + 4096, -1L, 1L << 40, 8192);
        long hvaBase = switch (in.below(8)) {
            case 6 -> hva(in);
            case 7 -> GuestRam.hva(gpa) + in.pick(1, 2, 4, 8); // address and mmap offset disagree: rings land misaligned
            default -> GuestRam.hva(gpa);
        };
        long offset = in.choose(gpa, 0, RAM / 2, RAM, -4096L, RAM - 4096);
        return new Region(gpa, size, hvaBase, offset);
    }

    private static int index(FuzzInput in) {
        return in.choose(0, 1, 2, 0xFF, 0x100, 0x101, -1);
    }

    private byte[] payload(int request, FuzzInput in) {
        return switch (request) {
            case SET_FEATURES, SET_PROTOCOL_FEATURES, SET_STATUS, NET_SET_MTU, SEND_RARP ->
                    Payloads.u64(in.choose(0, -1L, 1L << 32 | 1L << 30 | 1L << 29 | 1L << 28, 0xF, 0x8, 1500, 1L << 26));
            case SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ENABLE, GET_VRING_BASE ->
                    Payloads.vringState(index(in), in.choose(64, 0, 1, 256, 0xFFFF, 3, 32768, 65536, 0xFFFE));
            case SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR ->
                    Payloads.u64(index(in) & 0xFF | (in.bool() ? Payloads.NOFD : 0) | (in.below(8) == 7 ? in.u64() : 0));
            case SET_VRING_ADDR -> Payloads.vringAddr(index(in), in.pick(0, 1, 2), hva(in), hva(in), hva(in),
                    in.choose(0, RAM, -1L, 4096));
            case ADD_MEM_REG, REM_MEM_REG -> Payloads.memReg(region(in));
            case SET_MEM_TABLE -> {
                int n = in.below(4);
                Region[] regions = new Region[n];
                for (int i = 0; i < n; i++) {
                    regions[i] = region(in);
                }
                yield Payloads.memTable(in.below(8) == 7 ? in.below(12) : n, regions);
            }
            case GET_CONFIG, SET_CONFIG -> {
                int size = in.choose(16, 0, 4, 256, 257, 1, 0xFFFF, 12);
                yield Payloads.config(in.choose(0, 8, 15, 16, 256, -1), size, in.choose(0, 1, -1),
                        in.bytes(Math.min(size & 0x1FF, 300)));
            }
            case SET_LOG_BASE -> Payloads.logBase(in.choose(4096, 0, 8, RAM, -1L, RAM + 4096),
                    in.choose(0, 4096, RAM, -4096L, 7));
            case SET_INFLIGHT_FD, GET_INFLIGHT_FD -> ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN)
                    .putLong(in.choose(4096, 0, RAM, -1L, 8192)).putLong(in.choose(0, 4096, RAM, -4096L, 4))
                    .putShort((short) in.choose(2, 1, 0, 3, 0xFFFF)).putShort((short) in.choose(64, 0, 256, 0xFFFF, 1))
                    .array();
            default -> Payloads.NONE;
        };
    }

    @Override
    public void reset() throws Exception {
        close();
        open();
    }

    @Override
    public void close() throws Exception {
        try {
            fx.close();
        } finally {
            eventFd.close();
            q.close();
            ram.close();
        }
    }
}
