package io.jvhost.net;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** Ports for measuring: they need no network, only the guest. */
public final class BenchPorts {
    private BenchPorts() {}

    /** Counts and discards everything the guest sends. */
    public static final class Drop implements NetPort {
        private GuestNic nic;

        @Override
        public void attach(GuestNic nic) {
            this.nic = nic;
        }

        @Override
        public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length) {
            // counted by the transmit queue already
        }

        @Override
        public String describe() {
            return "drop: " + total(nic);
        }
    }

    /**
     * Sends each guest frame back to the same guest with source and destination MACs swapped: the
     * frames of one transmit batch are copied aside and delivered together at its end
     * ({@link #flush}), as a burst.
     */
    public static final class Reflect implements NetPort {
        private static final int BURST = 64, SLOT = 2048;
        private Staging[] staging; // one per queue pair: the pairs' pollers reflect at the same time
        private GuestNic nic;

        /** Frames waiting for the end of the batch, each in a slot of {@link #memory} (a bigger one alone in {@link #big}). */
        private static final class Staging {
            final MemorySegment memory = Arena.ofAuto().allocate((long) BURST * SLOT, 64);
            final MemorySegment big = Arena.ofAuto().allocate(65536, 64);
            final MemorySegment[] frames = new MemorySegment[BURST];
            final long[] offsets = new long[BURST];
            final long[] lengths = new long[BURST];
            int count;
        }

        @Override
        public void attach(GuestNic nic) {
            this.nic = nic;
            staging = new Staging[nic.pairs()];
            for (int i = 0; i < staging.length; i++) {
                staging[i] = new Staging();
            }
        }

        /** On the pair's poller, as every frame (the RARP announcement too): its staging and receive queue are ours. */
        @Override
        public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long n) {
            Staging s = staging[pair];
            if (s.count == BURST || n > SLOT) {
                flush(nic, pair);
            }
            int k = s.count++;
            MemorySegment out = n > SLOT ? s.big : s.memory;
            long at = n > SLOT ? 0 : (long) k * SLOT;
            MemorySegment.copy(memory, offset, out, at, n); // whole: an aligned copy, then the MACs over it
            Frames.putSwappedMacs(memory, offset, out, at);
            s.frames[k] = out;
            s.offsets[k] = at;
            s.lengths[k] = n;
            if (n > SLOT) {
                flush(nic, pair); // the big slot holds one frame
            }
        }

        @Override
        public void flush(GuestNic nic, int pair) {
            Staging s = staging[pair];
            if (s.count == 0) {
                return;
            }
            int taken = nic.deliver(pair, s.frames, s.offsets, s.lengths, s.count);
            if (taken < s.count) {
                nic.counters(pair).addRxDropped(s.count - taken); // nowhere to keep them: a guest without buffers loses them
            }
            s.count = 0;
        }

        @Override
        public String describe() {
            return "reflect: " + total(nic);
        }
    }

    /** Sends frames of a fixed size to the guest as fast as it posts receive buffers. */
    public static final class Generate implements NetPort {
        private static final int BURST = 64;
        private final int size;
        private final MemorySegment frame;
        /** The frame BURST times over, for one burst delivery per poll. */
        private final MemorySegment[] frames = new MemorySegment[BURST];
        private final long[] offsets = new long[BURST];
        private final long[] lengths = new long[BURST];
        private GuestNic nic;

        public Generate(int size) {
            if (size < 60 || size > 65535) {
                throw new IllegalArgumentException("frame size must be 60..65535: " + size);
            }
            this.size = size;
            this.frame = Arena.ofAuto().allocate(size, 64);
            java.util.Arrays.fill(frames, frame);
            java.util.Arrays.fill(lengths, size);
        }

        @Override
        public void attach(GuestNic nic) {
            this.nic = nic;
            MemorySegment.copy(MemorySegment.ofArray(Frames.udp(0x02_00_00_00_00_01L, nic.mac(), size)), 0, frame, 0, size);
        }

        @Override
        public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long length) {
            // what the guest sends is counted and dropped
        }

        @Override
        public int poll(GuestNic nic, int pair) {
            return nic.deliver(pair, frames, offsets, lengths, BURST);
        }

        @Override
        public String describe() {
            return "generate " + size + " B: " + total(nic);
        }
    }

    static String total(GuestNic nic) {
        if (nic == null) {
            return "not attached";
        }
        long rx = 0, tx = 0, rxDrop = 0, txDrop = 0;
        for (int i = 0; i < nic.pairs(); i++) {
            NetCounters c = nic.counters(i);
            rx += c.rxFrames;
            tx += c.txFrames;
            rxDrop += c.rxDropped;
            txDrop += c.txDropped;
        }
        return "to guest " + rx + " (dropped " + rxDrop + "), from guest " + tx + " (refused " + txDrop + ")";
    }
}
