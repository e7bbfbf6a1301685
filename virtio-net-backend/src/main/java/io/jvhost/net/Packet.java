package io.jvhost.net;

import java.lang.foreign.MemorySegment;

/** A pooled frame buffer for frames that cross threads on their way into a guest. */
final class Packet {
    final MemorySegment buffer;
    int length;
    /** Its offloads: plain unless it came with a header that asks for some. */
    final NetHeader header = new NetHeader();

    Packet(MemorySegment buffer) {
        this.buffer = buffer;
    }
}
