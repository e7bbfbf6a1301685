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

    /** Sends each guest frame back to the same guest with source and destination MACs swapped. */
    public static final class Reflect implements NetPort {
        private MemorySegment[] scratch; // one per queue pair: the pairs' pollers reflect at the same time
        private GuestNic nic;

        @Override
        public void attach(GuestNic nic) {
            this.nic = nic;
            scratch = new MemorySegment[nic.pairs()];
            for (int i = 0; i < scratch.length; i++) {
                scratch[i] = Arena.ofAuto().allocate(65536, 64);
            }
        }

        /** On the pair's poller, as every frame (the RARP announcement too): its scratch and receive queue are ours. */
        @Override
        public void onFrame(GuestNic nic, int pair, MemorySegment memory, long offset, long n) {
            MemorySegment out = scratch[pair];
            MemorySegment.copy(memory, offset, out, 0, n);
            long dst = Frames.destination(memory, offset);
            Frames.putMac(out, 0, Frames.source(memory, offset));
            Frames.putMac(out, 6, dst);
            int r = nic.deliver(pair, out, 0, n);
            if (r == GuestNic.NO_BUFFERS || r == GuestNic.NOT_RUNNING) {
                nic.counters(pair).addRxDropped(1); // nowhere to keep it: a guest without buffers loses it
            }
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
