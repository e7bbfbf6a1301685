package io.jvhost.net;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

class FramesSwapTest {

    @Test
    void shouldStoreTheSourceAsDestinationAndTheDestinationAsSourceLeavingTheRestAlone() {
        try (Arena arena = Arena.ofConfined()) {
            long dst = 0x52_54_00_12_34_56L, src = 0x02_AB_CD_EF_01_23L;
            MemorySegment in = arena.allocate(64 + 3); // at an odd offset, as a guest buffer may put it
            MemorySegment.copy(MemorySegment.ofArray(Frames.udp(src, dst, 64)), 0, in, 3, 64);
            MemorySegment out = arena.allocate(64);
            MemorySegment.copy(in, 3, out, 0, 64);

            Frames.putSwappedMacs(in, 3, out, 0);

            assertEquals(src, Frames.destination(out, 0));
            assertEquals(dst, Frames.source(out, 0));
            assertEquals(-1, in.asSlice(3 + 12, 52).mismatch(out.asSlice(12, 52)), "bytes after the MACs untouched");
            assertEquals(dst, Frames.destination(in, 3), "the frame read from unchanged");
        }
    }
}
