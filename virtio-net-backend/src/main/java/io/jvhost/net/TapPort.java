package io.jvhost.net;

import io.jvhost.core.sys.TapInterface;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Connects the guest NIC to a Linux TAP interface, one TAP queue per queue pair. Guest frames are
 * written straight from guest memory; frames from the TAP are read into a per-pair buffer and
 * copied once into the guest's receive buffers. The TAP fd wakes the pair's poller.
 */
public final class TapPort implements NetPort {
    private static final long EAGAIN = -11;

    private final TapInterface tap;
    private final MemorySegment[] buffers;
    private final long[] pending;
    /** Per queue pair of the NIC: each written by its pair's poller alone. */
    private long[] writeErrors = new long[0];
    private GuestNic nic;

    public TapPort(String name, int pairs) throws NativeException {
        this.tap = TapInterface.open(name, pairs);
        this.buffers = new MemorySegment[pairs];
        this.pending = new long[pairs];
        for (int i = 0; i < pairs; i++) {
            buffers[i] = Arena.ofAuto().allocate(65536, 64);
        }
    }

    public String name() {
        return tap.name();
    }

    @Override
    public void attach(GuestNic nic) {
        this.nic = nic;
        this.writeErrors = new long[nic.pairs()];
    }

    /** On the pair's poller; {@code memory} is native, so the frame goes to the TAP as it lies. */
    @Override
    public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length) {
        if (tap.write(pair % tap.queueCount(), memory, offset, length) < 0) {
            writeErrors[pair]++; // interface down or its queue full: the frame is lost, as on a wire
        }
    }

    @Override
    public int poll(GuestNic nic, int pair) {
        int done = 0;
        MemorySegment buf = buffers[pair];
        while (done < 64) {
            long n = pending[pair];
            if (n == 0) {
                n = tap.read(pair, buf);
                if (n <= 0) {
                    break; // EAGAIN: the poller's edge-triggered watch on the fd wakes us for more
                }
            }
            int r = nic.deliver(pair, buf, 0, n);
            if (r == GuestNic.NO_BUFFERS || r == GuestNic.NOT_RUNNING) {
                pending[pair] = n; // keep it until the guest posts buffers (it kicks then)
                break;
            }
            pending[pair] = 0;
            done++;
        }
        return done;
    }

    @Override
    public int wakeupFd(int pair) {
        return tap.fd(pair);
    }

    @Override
    public String describe() {
        long errors = 0;
        for (long e : writeErrors) {
            errors += e;
        }
        return "tap " + tap.name() + ": " + BenchPorts.total(nic) + (errors > 0 ? ", write errors " + errors : "");
    }
}
