package io.jvhost.core.protocol;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** Decoding of the u64 requests, the config space requests and the inflight requests. */
class DeviceRequestsTest {
    private static ByteBuffer le(int size) {
        return ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static byte[] config(int offset, int size, int flags, int dataLength) {
        return le(12 + dataLength).putInt(offset).putInt(size).putInt(flags).array();
    }

    private static byte[] inflight(int length, long mmapSize, long mmapOffset, int queues, int queueSize) {
        ByteBuffer b = le(24).putLong(mmapSize).putLong(mmapOffset).putShort((short) queues).putShort((short) queueSize);
        return java.util.Arrays.copyOf(b.array(), length);
    }

    private static void assertRefused(String expected, VringRequestsTest.ThrowingDecode decode) {
        ProtocolException e = assertThrows(ProtocolException.class, decode::run);
        assertTrue(e.getMessage().contains(expected), () -> "'" + e.getMessage() + "' should say '" + expected + "'");
    }

    // ---- u64 -------------------------------------------------------------------------------------

    @Test
    void shouldRoundTripAU64Payload() throws ProtocolException {
        assertEquals(0x8000_0000_0000_0001L, Payload.decodeU64(Payload.encodeU64(0x8000_0000_0000_0001L), 0));
        assertArrayEquals(new byte[] {1, 0, 0, 0, 0, 0, 0, 0}, Payload.encodeU64(1));
    }

    @Test
    void shouldRefuseAU64PayloadOfAnotherSizeOrWithFds() {
        assertRefused("payload of 4 bytes, expected 8", () -> Payload.decodeU64(new byte[4], 0));
        assertRefused("1 fds, expected 0", () -> Payload.decodeU64(new byte[8], 1));
    }

    // ---- config ----------------------------------------------------------------------------------

    @Test
    void shouldDecodeAConfigRangeWithItsData() throws ProtocolException {
        byte[] p = le(14).putInt(4).putInt(2).putInt(1).put((byte) 9).put((byte) 8).array();
        ConfigRequest r = ConfigRequest.decode(p, 0);
        assertEquals(4, r.offset());
        assertEquals(2, r.size());
        assertEquals(1, r.flags());
        assertArrayEquals(new byte[] {9, 8}, r.data());
        assertArrayEquals(p, r.encode());
    }

    @Test
    void shouldReplyWithTheRangeOfTheConfigAndZerosPastItsEnd() throws ProtocolException {
        ConfigRequest r = ConfigRequest.decode(config(2, 4, 0, 4), 0);
        byte[] reply = r.reply(new byte[] {1, 2, 3, 4});
        assertArrayEquals(le(16).putInt(2).putInt(4).putInt(0).put((byte) 3).put((byte) 4).array(), reply);
        ConfigRequest beyond = ConfigRequest.decode(config(200, 56, 0, 56), 0);
        assertArrayEquals(new byte[56], java.util.Arrays.copyOfRange(beyond.reply(new byte[] {1}), 12, 68));
    }

    @ParameterizedTest
    @CsvSource({"0, 256, 256", "256, 0, 0", "255, 1, 1"})
    void shouldAcceptAConfigRangeWithinTheFirst256Bytes(int offset, int size, int data) throws ProtocolException {
        assertEquals(size, ConfigRequest.decode(config(offset, size, 0, data), 0).size());
    }

    @ParameterizedTest
    @CsvSource({"0, 257, 257", "257, 0, 0", "200, 57, 57", "-1, 1, 1", "1, -1, 0", "0, 4, 3", "0, 4, 5"})
    void shouldRefuseAConfigRangePast256BytesOrDisagreeingWithThePayload(int offset, int size, int data) {
        assertRefused("config range", () -> ConfigRequest.decode(config(offset, size, 0, data), 0));
    }

    @Test
    void shouldRefuseAConfigMessageShorterThanItsHeaderOrWithFds() {
        assertRefused("config message of 11 bytes, 0 fds", () -> ConfigRequest.decode(new byte[11], 0));
        assertRefused("config message of 12 bytes, 1 fds", () -> ConfigRequest.decode(new byte[12], 1));
    }

    // ---- inflight --------------------------------------------------------------------------------

    @ParameterizedTest
    @ValueSource(ints = {20, 24})
    void shouldDecodeAnInflightRequestWithOrWithoutItsTailPadding(int length) throws ProtocolException {
        InflightRequest r = new InflightRequest(4096, 0, 2, 64);
        assertEquals(r, InflightRequest.decodeSet(inflight(length, 4096, 0, 2, 64), 1));
        assertEquals(r, InflightRequest.decodeGet(inflight(length, 4096, 0, 2, 64), 0));
        assertArrayEquals(inflight(24, 4096, 0, 2, 64), r.encode());
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 19, 25})
    void shouldRefuseAnInflightPayloadOfAnotherSize(int length) {
        assertRefused("inflight payload of " + length + " bytes", () -> InflightRequest.decodeGet(new byte[length], 0));
    }

    @ParameterizedTest
    @CsvSource({"0, 64", "1, 0", "1, 48", "1, 65535", "2, 65536"})
    void shouldRefuseNoQueuesOrAQueueSizeThatIsNotAPowerOfTwoUpTo32768(int queues, int queueSize) {
        assertRefused("inflight for", () -> InflightRequest.decodeGet(inflight(24, 0, 0, queues, queueSize), 0));
    }

    @Test
    void shouldRefuseFdsOnGetAndAnythingButOneFdOnSet() {
        assertRefused("1 fds on GET_INFLIGHT_FD", () -> InflightRequest.decodeGet(inflight(24, 0, 0, 1, 64), 1));
        assertRefused("0 fds on SET_INFLIGHT_FD", () -> InflightRequest.decodeSet(inflight(24, 0, 0, 1, 64), 0));
        assertRefused("2 fds on SET_INFLIGHT_FD", () -> InflightRequest.decodeSet(inflight(24, 0, 0, 1, 64), 2));
    }
}
