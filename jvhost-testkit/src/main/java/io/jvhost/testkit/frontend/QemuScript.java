package io.jvhost.testkit.frontend;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.Frontend.Reply;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.protocol.Header;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.device.ProtocolFeatures;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongSupplier;
import java.util.function.Supplier;

/**
 * A frontend conversation written down step by step, so that it can be replayed whole or cut off
 * after any step. Each step sends at most one message (and reads its reply, if it has one) or does
 * one thing on the guest's side, such as posting buffers.
 *
 * <p>Messages are sent the way QEMU 7.2 sends them: fire-and-forget ones without NEED_REPLY,
 * [A] ones with NEED_REPLY only once REPLY_ACK is negotiated, [R] ones waiting for their reply.
 * {@link Acks#EVERY_MESSAGE} instead asks for an ack on every message without a reply of its own
 * and checks it is 0, to prove no step of the replay was refused. Test thread only.
 */
public final class QemuScript {
    /** How the script asks for acks. */
    public enum Acks { QEMU, EVERY_MESSAGE }

    @FunctionalInterface
    public interface Action {
        void run(Frontend f) throws IOException;
    }

    @FunctionalInterface
    public interface ReplyCheck {
        void check(Reply r) throws IOException;
    }

    public record Step(String name, Action action) {
        @Override
        public String toString() {
            return name;
        }
    }

    private final Acks acks;
    private final List<Step> steps = new ArrayList<>();
    /** The protocol features the script has acked so far. */
    public long protocolFeatures;
    /** What the last GET_PROTOCOL_FEATURES offered. */
    public long offeredProtocolFeatures;
    /** What the last GET_STATUS answered. */
    public long status;

    public QemuScript(Acks acks) {
        this.acks = acks;
    }

    public int size() {
        return steps.size();
    }

    public List<Step> steps() {
        return List.copyOf(steps);
    }

    public void run(Frontend f) throws IOException {
        runFirst(f, steps.size());
    }

    /** Runs steps 0 to {@code count - 1}. A failure names the step. */
    public void runFirst(Frontend f, int count) throws IOException {
        for (int i = 0; i < count; i++) {
            Step s = steps.get(i);
            try {
                s.action().run(f);
            } catch (IOException | RuntimeException | AssertionError e) {
                throw new AssertionError("step " + i + " (" + s.name() + ") failed: " + e, e);
            }
        }
    }

    /** A step that is not a message. */
    public void step(String name, Action action) {
        steps.add(new Step(name, action));
    }

    private boolean replyAckNegotiated() {
        return (protocolFeatures & ProtocolFeatures.bit(ProtocolFeatures.REPLY_ACK)) != 0;
    }

    private static Fd[] fds(Supplier<Fd> fd) {
        return fd == null ? new Fd[0] : new Fd[] {fd.get()};
    }

    /** A fire-and-forget message in QEMU 7.2. */
    public void send(String name, int request, Supplier<byte[]> payload, Supplier<Fd> fd) {
        step(name, f -> {
            if (acks == Acks.EVERY_MESSAGE) {
                assertEquals(0, f.requestWithAck(request, payload.get(), fds(fd)), name + " refused");
            } else {
                f.send(request, Header.VERSION, payload.get(), fds(fd));
            }
        });
    }

    public void send(String name, int request, byte[] payload) {
        send(name, request, () -> payload, null);
    }

    /** An [A] message: QEMU asks for an ack when REPLY_ACK was negotiated, and fails on a refusal. */
    public void acked(String name, int request, Supplier<byte[]> payload, Supplier<Fd> fd) {
        ackedWithFds(name, request, payload, () -> fds(fd));
    }

    /** {@link #acked} for a message with several fds (SET_MEM_TABLE). */
    public void ackedWithFds(String name, int request, Supplier<byte[]> payload, Supplier<Fd[]> fds) {
        step(name, f -> {
            if (acks == Acks.EVERY_MESSAGE || replyAckNegotiated()) {
                assertEquals(0, f.requestWithAck(request, payload.get(), fds.get()), name + " refused");
            } else {
                f.send(request, Header.VERSION, payload.get(), fds.get());
            }
        });
    }

    /** An [R] message: always answered with a payload of its own. */
    public void get(String name, int request, Supplier<byte[]> payload, ReplyCheck check) {
        step(name, f -> {
            Reply r = f.call(request, payload.get());
            Fd.closeAll(r.fds());
            check.check(r);
        });
    }

    public void get(String name, int request, ReplyCheck check) {
        get(name, request, () -> new byte[0], check);
    }

    /** SET_PROTOCOL_FEATURES with what the last GET_PROTOCOL_FEATURES offered, masked. */
    public void setProtocolFeatures(LongSupplier wanted) {
        step("SET_PROTOCOL_FEATURES", f -> {
            long acked = offeredProtocolFeatures & wanted.getAsLong();
            if (acks == Acks.EVERY_MESSAGE) {
                assertEquals(0, f.requestWithAck(MessageType.SET_PROTOCOL_FEATURES, Frontend.u64(acked)));
            } else {
                f.send(MessageType.SET_PROTOCOL_FEATURES, Header.VERSION, Frontend.u64(acked));
            }
            protocolFeatures = acked;
        });
    }

    /**
     * QEMU 7.2's {@code vhost_user_add_status}: GET_STATUS, then SET_STATUS with {@code bits}
     * added unless they are all set already (the second step then sends nothing).
     */
    public void addStatus(int bits) {
        get("GET_STATUS", MessageType.GET_STATUS, r -> status = r.u64());
        step("SET_STATUS |= 0x" + Integer.toHexString(bits), f -> {
            if ((status & bits) != bits) {
                long s = status | bits;
                if (acks == Acks.EVERY_MESSAGE) {
                    assertEquals(0, f.requestWithAck(MessageType.SET_STATUS, Frontend.u64(s)));
                } else {
                    f.send(MessageType.SET_STATUS, Header.VERSION, Frontend.u64(s));
                }
            }
        });
    }
}
