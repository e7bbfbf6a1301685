package io.jvhost.core.protocol;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The 12-byte header: its wire layout, round trips both ways, and what a request header may carry. */
class HeaderTest {
    @Test
    void shouldLayOutRequestFlagsAndSizeAsLittleEndianU32s() {
        byte[] bytes = Header.encode(MessageType.SET_VRING_NUM, Header.VERSION | Header.NEED_REPLY, new byte[] {1, 2, 3});
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(Header.SIZE + 3, bytes.length);
        assertEquals(MessageType.SET_VRING_NUM, b.getInt(0));
        assertEquals(Header.VERSION | Header.NEED_REPLY, b.getInt(4));
        assertEquals(3, b.getInt(8));
        assertArrayEquals(new byte[] {1, 2, 3}, java.util.Arrays.copyOfRange(bytes, Header.SIZE, bytes.length));
    }

    @Property
    void shouldDecodeWhatItEncodedInAByteArray(@ForAll int request, @ForAll int flags, @ForAll int size) {
        byte[] bytes = new byte[Header.SIZE];
        Header.encode(MemorySegment.ofArray(bytes), request, flags, size);
        assertEquals(new Header(request, flags, Integer.toUnsignedLong(size)), Header.decode(bytes));
    }

    @Test
    void shouldDecodeWhatItEncodedInNativeMemory() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(Header.SIZE + 4);
            Header.encode(buffer, MessageType.GET_FEATURES, Header.VERSION | Header.REPLY, 8);
            Header h = Header.decode(buffer);
            assertEquals(new Header(MessageType.GET_FEATURES, Header.VERSION | Header.REPLY, 8), h);
            assertTrue(h.isReply());
            assertFalse(h.needsReply());
        }
    }

    @Test
    void shouldReadTheSizeFieldAsUnsigned() {
        byte[] bytes = new byte[Header.SIZE];
        Header.encode(MemorySegment.ofArray(bytes), 1, Header.VERSION, -1);
        assertEquals(0xFFFF_FFFFL, Header.decode(bytes).size());
    }

    @ParameterizedTest
    @ValueSource(ints = {Header.VERSION, Header.VERSION | Header.NEED_REPLY})
    void shouldAcceptARequestHeaderOfVersionOneWithOrWithoutNeedReply(int flags) throws ProtocolException {
        Header h = new Header(MessageType.SET_OWNER, flags, Header.MAX_PAYLOAD);
        assertEquals(h, h.checkRequest());
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 2, 3, Header.VERSION | Header.REPLY, Header.VERSION | 0x10, Header.VERSION | 0x8000_0000})
    void shouldRefuseARequestHeaderWithAnotherVersionTheReplyFlagOrAnUnknownFlagAsFatal(int flags) {
        ProtocolException e = assertThrows(ProtocolException.class, () -> new Header(1, flags, 0).checkRequest());
        assertTrue(e.fatal());
    }

    @ParameterizedTest
    @ValueSource(longs = {Header.MAX_PAYLOAD + 1, 0xFFFF_FFFFL})
    void shouldRefuseARequestHeaderAnnouncingMoreThanTheLargestPayloadAsFatal(long size) {
        ProtocolException e = assertThrows(ProtocolException.class, () -> new Header(1, Header.VERSION, size).checkRequest());
        assertTrue(e.fatal());
    }
}
