package io.jvhost.core.ring;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.fuzz.Features;
import io.jvhost.testkit.fuzz.FuzzInput;
import io.jvhost.testkit.fuzz.FuzzTarget;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static io.jvhost.core.ring.ChainFuzzTarget.QUARTER;
import static io.jvhost.core.ring.ChainFuzzTarget.RAM;
import static io.jvhost.core.ring.ChainFuzzTarget.inMapped;

/**
 * The packed ring (virtio 1.2 §2.8) against whatever a driver may write: an input becomes a packed
 * queue (size, EVENT_IDX, INDIRECT_DESC, IN_ORDER, a starting position and lap) and up to four
 * rounds of descriptors written mostly as a driver would (in ring order, flagged available in the
 * current lap) and otherwise anywhere with any flags, id or lap, plus packed indirect tables, all
 * drained by a device that reads and writes every buffer it is handed, completes in any order and
 * sometimes gives chains back.
 *
 * <p>Guest RAM as in {@link ChainFuzzTarget}: four regions, the third a hole. A failure is any
 * exception, a buffer outside the mapped regions, a buffer id at or above the queue size, more
 * chains or buffers than the queue holds, or, unless the ring latched broken, a used position that
 * did not catch up with the avail position once everything taken was completed.
 */
public final class PackedChainFuzzTarget implements FuzzTarget {
    private static final int[] SIZES = {8, 4, 16, 256, 1, 2, 6};
    private static final int F_NEXT = DriverQueue.F_NEXT, F_WRITE = DriverQueue.F_WRITE, F_INDIRECT = DriverQueue.F_INDIRECT,
            F_AVAIL = DriverQueue.F_AVAIL, F_USED = DriverQueue.F_USED;
    private final ChainFuzzTarget walker = new ChainFuzzTarget();

    @Override
    public String name() {
        return "packed-chains";
    }

    @Override
    public int maxLength() {
        return 1024;
    }

    @Override
    public void run(byte[] input, Features features) throws Exception {
        FuzzInput in = new FuzzInput(input);
        int size = SIZES[in.below(SIZES.length)];
        int options = (in.bool() ? VirtQueue.EVENT_IDX : 0) | (in.bool() ? 0 : VirtQueue.INDIRECT)
                | (in.below(4) == 0 ? VirtQueue.IN_ORDER : 0);
        int pos = in.below(size), wrap = in.bool() ? 1 : 0;
        try (RingFixture f = new RingFixture(DriverQueue.Layout.PACKED, size, RAM, new boolean[] {false, false, true, false},
                QUARTER, 2 * QUARTER, 3 * QUARTER)) {
            f.driver.startAt(pos | wrap << 15);
            f.configure(pos | wrap << 15 | (long) (pos | wrap << 15) << 16, options);
            int[] cursor = {pos, wrap};
            int rounds = 1 + in.below(4);
            for (int round = 0; round < rounds && !f.queue.isBroken(); round++) {
                runRound(f, in, size, cursor, features);
            }
            if ((f.queue.position().lastAvailIdx() >>> 15) != wrap) {
                features.hit("lap-changed");
            }
            for (Map.Entry<ChainError, Long> e : f.queue.counters().rejectedByError().entrySet()) {
                features.hit("rejected", e.getKey());
            }
            if (f.queue.isBroken()) {
                features.hit("ring-broken");
            }
        }
    }

    private void runRound(RingFixture f, FuzzInput in, int size, int[] cursor, Features features) {
        int descriptors = in.below(2 * size + 1);
        for (int d = 0; d < descriptors; d++) {
            boolean inOrder = in.below(4) != 0; // a driver's next slot, in its lap
            int slot = inOrder ? cursor[0] : in.below(size);
            int laps = inOrder || in.bool() ? DriverQueue.availableFlags(cursor[1]) : in.pick(0, F_AVAIL, F_USED, F_AVAIL | F_USED);
            int flags = (in.bool() ? F_NEXT : 0) | (in.bool() ? F_WRITE : 0) | (in.below(6) == 0 ? F_INDIRECT : 0);
            if (in.below(16) == 0) {
                flags = in.u16();
            } else {
                flags |= laps;
            }
            int id = in.below(8) == 7 ? in.u16() : in.below(size);
            f.driver.writePackedDescriptor(slot, ChainFuzzTarget.address(in, f), ChainFuzzTarget.length(in), id, flags);
            if (inOrder && ++cursor[0] == size) {
                cursor[0] = 0;
                cursor[1] ^= 1;
            }
        }
        int tables = in.below(3);
        for (int t = 0; t < tables; t++) {
            long at = ChainFuzzTarget.table(in);
            int entries = in.below(size + 2);
            for (int e = 0; e < entries; e++) {
                long gpa = at + 16L * e;
                if (inMapped(gpa, 16)) {
                    f.writeIndirect(gpa, 0, ChainFuzzTarget.address(in, f), ChainFuzzTarget.length(in), 0, 0);
                    // packed table entry: flags at byte 14 (writeIndirect put them at 12, the split place)
                    f.ram.at(gpa + 12, 4).set(RingFixture.U32_UNALIGNED, 0, in.pick(0, F_WRITE, F_NEXT, F_INDIRECT) << 16);
                }
            }
        }
        List<Integer> taken = new ArrayList<>();
        long buffers = 0;
        int streak = 0; // the newest chains taken, none completed since and no chain refused in between: may be given back
        long rejected = f.queue.counters().chainsRejected();
        while (true) {
            if (in.below(4) == 0 && walker.burst(f, in, size, in.bool(), features, taken) > 0) {
                streak = 0; // one-buffer chains taken and used together, beside those in flight
                continue;
            }
            DescriptorChain c = f.queue.next();
            if (c == null) {
                break;
            }
            if (taken.size() >= size) {
                throw new AssertionError("the queue handed out more chains than the ring holds");
            }
            if (c.head() < 0 || c.head() >= size) {
                throw new AssertionError("buffer id " + c.head() + " in a queue of " + size);
            }
            if (taken.contains(c.head())) {
                throw new AssertionError("buffer id " + c.head() + " handed out twice while in flight");
            }
            buffers += c.count();
            if (buffers > (long) size * size) {
                throw new AssertionError(buffers + " buffers in a queue of " + size);
            }
            features.hit(c.count() > 1 ? "served-chain" : "served-single");
            if (f.queue.counters().chainsRejected() != rejected) {
                rejected = f.queue.counters().chainsRejected();
                streak = 0; // a refused chain was completed among them: no giving back across it
            }
            taken.add(c.head());
            streak++;
            long written = walker.serve(c, size);
            if (in.below(8) == 0) { // give the newest chains back, as a merging receive path does
                int back = 1 + in.below(streak);
                f.queue.rewind(back);
                features.hit("rewound");
                taken.subList(taken.size() - back, taken.size()).clear();
                break;
            }
            if (in.bool()) {
                f.queue.complete(c, written);
                taken.remove(taken.size() - 1);
                streak = 0;
            }
        }
        while (!taken.isEmpty()) { // the rest in any order
            f.queue.complete(taken.remove(in.below(taken.size())), 0);
        }
        f.queue.publish();
        if (!f.queue.isBroken() && f.queue.position().usedIdx() != f.queue.position().lastAvailIdx()) {
            throw new AssertionError("everything taken was completed, but used stands at 0x"
                    + Integer.toHexString(f.queue.position().usedIdx()) + " and avail at 0x" + Integer.toHexString(f.queue.position().lastAvailIdx()));
        }
    }

    @Override
    public void reset() {
        // Every input builds its own queue and memory: nothing to reset.
    }

    @Override
    public void close() {
        walker.close();
    }
}
