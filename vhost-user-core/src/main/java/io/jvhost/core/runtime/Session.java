package io.jvhost.core.runtime;

import io.jvhost.core.device.ProtocolFeatures;
import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.core.device.VirtioDevice;
import io.jvhost.core.memory.MemoryMap;
import io.jvhost.core.protocol.ConfigRequest;
import io.jvhost.core.protocol.InflightRequest;
import io.jvhost.core.protocol.LogBase;
import io.jvhost.core.protocol.MemoryTable;
import io.jvhost.core.protocol.Message;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.protocol.Payload;
import io.jvhost.core.protocol.ProtocolException;
import io.jvhost.core.protocol.RegionDescription;
import io.jvhost.core.protocol.Trace;
import io.jvhost.core.protocol.VringAddress;
import io.jvhost.core.protocol.VringFd;
import io.jvhost.core.protocol.VringState;
import io.jvhost.core.sys.Fd;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import static io.jvhost.core.protocol.MessageType.*;

/**
 * The backend side of one frontend connection, and what the transport talks to: it decodes each
 * request ({@code protocol}), hands it to the part of the runtime that owns what it changes, and
 * answers. Messages are handled strictly one at a time: when one needs the pollers (a queue
 * starts, stops or changes), its reply and the next message wait until every poller involved has
 * acknowledged.
 *
 * <ul>
 *   <li>{@link Negotiation}: features, protocol features, status, and when to ack;
 *   <li>{@link SharedRegions}: guest memory, the dirty log and the inflight region;
 *   <li>{@link Vrings}: the per-vring state machine and the queues on their pollers;
 *   <li>{@link BackendChannel}: requests from the backend to the frontend.
 * </ul>
 *
 * <p>Control thread only.
 */
public final class Session {
    private static final Logger LOG = LoggerFactory.getLogger(Session.class);
    /** The decoded-message trace, under the protocol's logger name ({@code --trace}). */
    private static final Logger TRACE = LoggerFactory.getLogger(Trace.class);

    /** Where replies go. */
    public interface Output {
        void reply(int request, byte[] payload, int[] fds);

        void drop(String reason);
    }

    private final String name;
    private final Backend backend;
    private final VirtioDevice device;
    private final Output out;
    private final Negotiation negotiation;
    private final SharedRegions regions;
    private final Vrings vrings;
    private final BackendChannel channel;
    private boolean closed;
    /** What a successor replays besides the regions and vrings (live upgrade). */
    private final SessionImage image = new SessionImage();
    private long messages;
    private long messagesRefused;

    public Session(String name, Backend backend, Output out) {
        this.name = name;
        this.backend = backend;
        this.device = backend.device();
        this.out = out;
        this.negotiation = new Negotiation(device);
        this.regions = new SharedRegions(name, backend.keepsFds());
        this.vrings = new Vrings(name, backend, negotiation, regions);
        this.channel = new BackendChannel(name);
    }

    public long messages() {
        return messages;
    }

    public long messagesRefused() {
        return messagesRefused;
    }

    /** The guest memory table as mapped now. */
    public MemoryMap memory() {
        return regions.memory();
    }

    /**
     * Sends CONFIG_CHANGE_MSG on the backend channel, if the frontend gave one and negotiated
     * CONFIG.
     */
    public void sendConfigChange() {
        if (closed || !channel.isOpen() || !negotiation.hasProtocol(ProtocolFeatures.BACKEND_REQ)
                || !negotiation.hasProtocol(ProtocolFeatures.CONFIG)) {
            LOG.info("{}: config changed, but the frontend has no backend channel with CONFIG to hear it", name);
            return;
        }
        channel.sendConfigChange();
    }

    /**
     * Handles one message. Takes ownership of its fds. {@code resume} runs (on the control thread)
     * once the reply, if any, is sent and the next message may be read.
     */
    public void handle(Message m, Runnable resume) {
        messages++;
        if (TRACE.isDebugEnabled()) {
            TRACE.debug("{} <- {}", name, Trace.describe(m));
        }
        Exchange x = new Exchange(m, settled -> finish(settled, resume));
        try {
            if (closed) {
                throw new ProtocolException("session closed", true);
            }
            dispatch(x);
        } catch (ProtocolException e) {
            refuse(x, e);
        } catch (RuntimeException e) {
            backend.controlFailed();
            LOG.error("{}: {} failed", name, m.name(), e);
            refuse(x, new ProtocolException(e.toString()));
        } finally {
            Fd.closeAll(m.fds());
        }
        x.seal();
    }

    private void refuse(Exchange x, ProtocolException e) {
        messagesRefused++;
        x.fail();
        Message m = x.message;
        // A request with a reply of its own cannot be answered with a refusal: the frontend would
        // read the ack as the reply.
        boolean drop = e.fatal() || MessageType.hasOwnReply(m.request());
        LOG.warn("{}: refused {}: {}{}", name, m.name(), e.getMessage(), drop ? " (closing connection)" : "");
        if (e.fatal() && !closed) {
            backend.frontendFault(m.name() + ": " + e.getMessage());
        }
        if (drop) {
            x.afterAcks(() -> out.drop(m.name() + ": " + e.getMessage()));
        }
    }

    private void finish(Exchange x, Runnable resume) {
        x.runAfterAcks();
        int request = x.message.request();
        if (x.reply() != null) {
            out.reply(request, x.reply(), x.replyFds());
        } else if (negotiation.acks(x.message)) {
            out.reply(request, Payload.encodeU64(x.failed() ? 1 : 0), null);
        }
        x.closeFds(); // after the reply: it may carry one of them
        resume.run();
    }

    private void dispatch(Exchange x) throws ProtocolException {
        Message m = x.message;
        byte[] p = m.payload();
        int fds = m.fdCount();
        switch (m.request()) {
            case GET_FEATURES -> reply(x, negotiation.offeredFeatures());
            case SET_FEATURES -> {
                long f = Payload.decodeU64(p, fds);
                negotiation.ackFeatures(f);
                image.featuresSet();
                device.featuresAcked(f);
                vrings.reconcileAll(x, true);
            }
            case SET_OWNER -> Payload.expect(p, fds, 0, 0);
            case RESET_OWNER, RESET_DEVICE -> {
                Payload.expect(p, fds, 0, 0);
                vrings.reset(x);
                x.afterAcks(() -> {
                    negotiation.resetDevice();
                    image.deviceReset();
                    device.reset();
                });
            }
            case GET_PROTOCOL_FEATURES -> reply(x, negotiation.offeredProtocolFeatures());
            case SET_PROTOCOL_FEATURES -> {
                negotiation.ackProtocolFeatures(Payload.decodeU64(p, fds));
                image.protocolFeaturesSet();
            }
            case GET_QUEUE_NUM -> reply(x, vrings.count());
            case GET_MAX_MEM_SLOTS -> reply(x, MemoryMap.MAX_SLOTS);
            case SET_MEM_TABLE -> {
                MemoryTable table = MemoryTable.decode(p, fds);
                Fd[] taken = new Fd[fds];
                for (int i = 0; i < fds; i++) {
                    taken[i] = m.take(i);
                }
                regions.setMemTable(table, taken);
                memoryChanged(x);
            }
            case ADD_MEM_REG -> {
                regions.addRegion(RegionDescription.decodeAdd(p, fds), m.take(0));
                memoryChanged(x);
            }
            case REM_MEM_REG -> {
                regions.removeRegion(RegionDescription.decodeRemove(p, fds));
                memoryChanged(x);
            }
            case SET_VRING_NUM -> vrings.setNum(x, VringState.decode(p, fds));
            case SET_VRING_ADDR -> vrings.setAddress(x, VringAddress.decode(p, fds));
            case SET_VRING_BASE -> vrings.setBase(x, VringState.decode(p, fds));
            case GET_VRING_BASE -> vrings.getBase(x, VringState.decode(p, fds));
            case SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR -> vrings.setFd(x, VringFd.decode(p, fds));
            case SET_VRING_ENABLE -> vrings.setEnable(x, VringState.decode(p, fds));
            case SET_BACKEND_REQ_FD -> {
                Payload.expect(p, fds, 0, 1);
                x.closeAfterReply(channel.replace(m.take(0)));
            }
            case GET_CONFIG -> {
                ConfigRequest r = ConfigRequest.decode(p, fds);
                x.reply(r.reply(device.config()));
            }
            case SET_CONFIG -> {
                ConfigRequest r = ConfigRequest.decode(p, fds);
                if (!device.writeConfig(r.offset(), r.data())) {
                    throw new ProtocolException("device refused config write at " + r.offset() + "+" + r.size());
                }
                image.configWritten(p);
            }
            // Status 0 arrives before the last GET_VRING_BASE (QEMU 7.2): ring state stays.
            case SET_STATUS -> negotiation.status(Payload.decodeU64(p, fds));
            case GET_STATUS -> reply(x, negotiation.status());
            case NET_SET_MTU -> {
                long mtu = Payload.decodeU64(p, fds);
                if (mtu < 68 || mtu > 65535 || !device.setMtu((int) mtu)) {
                    throw new ProtocolException("MTU " + mtu + " refused");
                }
                image.mtuSet(p);
            }
            case SEND_RARP -> {
                if (!device.sendRarp(Payload.decodeU64(p, fds) & 0xFFFF_FFFF_FFFFL)) {
                    throw new ProtocolException("this device does not send RARP");
                }
            }
            case SET_LOG_BASE -> setLogBase(x);
            case GET_INFLIGHT_FD -> {
                regions.createInflight(x, inflightRequest(InflightRequest.decodeGet(p, fds)),
                        negotiation.has(VirtioFeatures.RING_PACKED));
                vrings.reconcileAll(x, true);
            }
            case SET_INFLIGHT_FD -> {
                InflightRequest r = inflightRequest(InflightRequest.decodeSet(p, fds));
                regions.setInflight(x, r, m.take(0));
                vrings.reconcileAll(x, true);
            }
            default -> throw new ProtocolException("not supported by this backend");
        }
    }

    /** Answers a request with no payload of its own with a u64. */
    private static void reply(Exchange x, long value) throws ProtocolException {
        Payload.expect(x.message.payload(), x.message.fdCount(), 0, 0);
        x.reply(Payload.encodeU64(value));
    }

    /** Running queues move to the new table; old mappings go once every poller has moved. */
    private void memoryChanged(Exchange x) {
        vrings.reconcileAll(x, true);
        x.afterAcks(regions::unmapRetired);
    }

    /**
     * SET_LOG_BASE (LOG_SHMFD): maps the frontend's dirty bitmap and answers with an empty reply,
     * as QEMU waits for one. Running queues switch to the new log.
     */
    private void setLogBase(Exchange x) throws ProtocolException {
        if (!negotiation.hasProtocol(ProtocolFeatures.LOG_SHMFD)) {
            throw new ProtocolException("LOG_SHMFD was not negotiated");
        }
        Message m = x.message;
        regions.setLog(x, LogBase.decode(m.payload(), m.fdCount()), m.take(0));
        vrings.reconcileAll(x, true);
        x.reply(Payload.NONE);
    }

    /** An inflight request this backend can serve: INFLIGHT_SHMFD offered, no more queues than it has. */
    private InflightRequest inflightRequest(InflightRequest r) throws ProtocolException {
        if (!negotiation.offersProtocol(ProtocolFeatures.INFLIGHT_SHMFD)) {
            throw new ProtocolException("INFLIGHT_SHMFD was not offered");
        }
        if (r.queues() > vrings.count()) {
            throw new ProtocolException("inflight for " + r.queues() + " queues of " + r.queueSize());
        }
        return r;
    }

    /**
     * Live upgrade, this side: holds every queue stopped at a request boundary (requests in flight
     * finish and are published) and gives {@code paused} the messages that rebuild this session in
     * a successor, carrying duplicates of every fd: features, memory, inflight region, dirty log,
     * backend channel, each vring where it stopped, and device writes. {@link #resume()} undoes it
     * when the successor fails. Call between messages. Control thread.
     */
    public void pause(java.util.function.Consumer<java.util.List<Message>> paused) {
        internal(vrings::hold, () -> {
            try {
                paused.accept(image.messages(negotiation, regions, channel, vrings));
            } catch (io.jvhost.core.sys.NativeException e) {
                LOG.error("{}: cannot hand over: {}", name, e.getMessage());
                paused.accept(null);
            }
        });
    }

    /** Serves again after {@link #pause}: every queue its state asks for runs again where it stopped. Control thread. */
    public void resume() {
        internal(vrings::release, () -> LOG.info("{}: serving again", name));
    }

    /**
     * Live upgrade, the successor's side: rebuilds the session a predecessor paused, each message
     * handled as if the frontend sent it (replies go nowhere), with every queue held stopped until
     * {@link #resume()}. {@code done} gets null, or why a message was refused (the predecessor
     * then serves on). Control thread.
     */
    public void replay(java.util.List<Message> messages, java.util.function.Consumer<String> done) {
        internal(vrings::hold, () -> replayFrom(messages, 0, done));
    }

    private void replayFrom(java.util.List<Message> messages, int next, java.util.function.Consumer<String> done) {
        if (next == messages.size()) {
            done.accept(null);
            return;
        }
        Message m = messages.get(next);
        long refusedBefore = messagesRefused;
        handle(m, () -> {
            if (messagesRefused != refusedBefore || closed) {
                for (int i = next + 1; i < messages.size(); i++) {
                    Fd.closeAll(messages.get(i).fds());
                }
                done.accept(m.name() + " refused (see the log above)");
            } else {
                replayFrom(messages, next + 1, done);
            }
        });
    }


    /** Runs {@code change} on an exchange of the session's own (no frontend message); {@code then} once the pollers acked. */
    private void internal(java.util.function.Consumer<Exchange> change, Runnable then) {
        Exchange x = new Exchange(SessionImage.message(0, Payload.NONE), settled -> {
            settled.runAfterAcks();
            then.run();
        });
        change.accept(x);
        x.seal();
    }

    /**
     * Ends the session: stops every queue, then closes every fd, unmaps guest memory and resets
     * the device before running {@code done}. Control thread.
     */
    public void close(Runnable done) {
        if (closed) {
            done.run();
            return;
        }
        closed = true;
        Barrier b = new Barrier(() -> {
            vrings.closeFds();
            channel.close();
            regions.close();
            device.reset();
            LOG.info("{}: session ended after {} messages ({} refused)", name, messages, messagesRefused);
            done.run();
        });
        vrings.close(b);
        b.seal();
    }
}
