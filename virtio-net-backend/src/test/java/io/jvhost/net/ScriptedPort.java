package io.jvhost.net;

import io.jvhost.core.ring.ChainCursor;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLongArray;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * A port a test scripts: it records every frame the guest sends (with the pair and the thread it
 * came on), injects frames from the test thread, and produces frames on the pair's poller from an
 * outbox, as a TAP port would, woken through its wakeup eventfd.
 */
final class ScriptedPort implements NetPort, AutoCloseable {
    /** A frame the port was handed: in one piece (pieces 1) or as it lay in guest memory ({@link #takePieces}). */
    record Seen(int pair, byte[] frame, Thread thread, int pieces) {
        Seen(int pair, byte[] frame, Thread thread) {
            this(pair, frame, thread, 1);
        }
    }

    /** Whether the port takes a scattered frame's pieces as they lie ({@link #onFramePieces}); off by default. */
    volatile boolean takePieces;

    final LinkedBlockingQueue<Seen> seen = new LinkedBlockingQueue<>();
    private final List<ConcurrentLinkedQueue<byte[]>> outbox = new ArrayList<>();
    private final Fd[] wake;
    private final AtomicLongArray polls;
    private volatile GuestNic nic;

    ScriptedPort(int pairs) throws NativeException {
        wake = new Fd[pairs];
        polls = new AtomicLongArray(pairs);
        for (int i = 0; i < pairs; i++) {
            outbox.add(new ConcurrentLinkedQueue<>());
            wake[i] = EventFd.create();
        }
    }

    @Override
    public void attach(GuestNic nic) {
        this.nic = nic;
    }

    GuestNic nic() {
        return nic;
    }

    @Override
    public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length) {
        seen.add(new Seen(pair, memory.asSlice(offset, length).toArray(ValueLayout.JAVA_BYTE), Thread.currentThread()));
    }

    @Override
    public boolean onFramePieces(GuestNic nic, int pair, NetHeader header, ChainCursor pieces, long length) {
        if (!takePieces) {
            return false;
        }
        java.io.ByteArrayOutputStream frame = new java.io.ByteArrayOutputStream();
        int n = 0;
        for (long left = length; left > 0 && pieces.next(left); left -= pieces.length(), n++) {
            frame.writeBytes(pieces.memory().asSlice(pieces.offset(), pieces.length()).toArray(ValueLayout.JAVA_BYTE));
        }
        seen.add(new Seen(pair, frame.toByteArray(), Thread.currentThread(), n));
        return true;
    }

    /** Delivers the outbox of {@code pair} while the guest has buffers; a frame without room waits. */
    @Override
    public int poll(GuestNic nic, int pair) {
        polls.incrementAndGet(pair);
        LibC.eventfdDrain(wake[pair].get());
        ConcurrentLinkedQueue<byte[]> out = outbox.get(pair);
        int done = 0;
        for (byte[] f; (f = out.peek()) != null; ) {
            int r = nic.deliver(pair, MemorySegment.ofArray(f), 0, f.length);
            if (r == GuestNic.NO_BUFFERS || r == GuestNic.NOT_RUNNING) {
                break;
            }
            out.poll();
            done++;
        }
        return done;
    }

    @Override
    public int wakeupFd(int pair) {
        return wake[pair].get();
    }

    /** Queues {@code frame} for the guest on {@code pair} from this (non-poller) thread. */
    boolean inject(int pair, byte[] frame) {
        return nic.inject(pair, MemorySegment.ofArray(frame), 0, frame.length);
    }

    /** Has the poller of {@code pair} deliver {@code frame} itself, in {@link #poll}. */
    void produce(int pair, byte[] frame) {
        outbox.get(pair).add(frame);
        LibC.eventfdSignal(wake[pair].get());
    }

    /** How often the poller of {@code pair} has polled the port. */
    long polls(int pair) {
        return polls.get(pair);
    }

    /** Frames the poller has not delivered yet. */
    int waiting(int pair) {
        return outbox.get(pair).size();
    }

    /** Waits for the next frame the guest sent. */
    Seen awaitSeen() throws InterruptedException {
        Seen s = seen.poll(NetRig.TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        assertNotNull(s, "the port was handed no frame within " + NetRig.TIMEOUT);
        return s;
    }

    @Override
    public void close() {
        for (Fd f : wake) {
            f.close();
        }
    }
}
