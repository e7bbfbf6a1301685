package io.jvhost.core.protocol;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** Decoding of the per-vring requests: vring state, vring address and the vring fd word. */
class VringRequestsTest {
    private static ByteBuffer le(int size) {
        return ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static byte[] address(int index, int flags, long desc, long used, long avail, long log) {
        return le(40).putInt(index).putInt(flags).putLong(desc).putLong(used).putLong(avail).putLong(log).array();
    }

    private static void assertRefused(String expected, ThrowingDecode decode) {
        ProtocolException e = assertThrows(ProtocolException.class, decode::run);
        assertTrue(e.getMessage().contains(expected), () -> "'" + e.getMessage() + "' should say '" + expected + "'");
        assertFalse(e.fatal(), "the runtime decides whether a refusal ends the connection");
    }

    @FunctionalInterface
    interface ThrowingDecode {
        void run() throws ProtocolException;
    }

    // ---- vring state -----------------------------------------------------------------------------

    @Test
    void shouldDecodeBothVringStateFieldsAsUnsigned() throws ProtocolException {
        assertEquals(new VringState(0xFFFF_FFFFL, 0x8000_0000L), VringState.decode(VringState.encode(-1, 0x8000_0000), 0));
        assertEquals(new VringState(1, 256), VringState.decode(le(8).putInt(1).putInt(256).array(), 0));
    }

    @ParameterizedTest
    @CsvSource({"0, 0, payload of 0 bytes", "7, 0, payload of 7 bytes", "9, 0, payload of 9 bytes", "8, 1, 1 fds"})
    void shouldRefuseAVringStateOfAnotherSizeOrWithFds(int size, int fds, String expected) {
        assertRefused(expected, () -> VringState.decode(new byte[size], fds));
    }

    // ---- vring address ---------------------------------------------------------------------------

    @Test
    void shouldDecodeAVringAddressFieldByField() throws ProtocolException {
        VringAddress a = VringAddress.decode(address(3, 1, 0x1000, 0x2004, 0x3002, 0x4000), 0);
        assertEquals(new VringAddress(3, VringAddress.F_LOG, 0x1000, 0x2004, 0x3002, 0x4000), a);
        assertTrue(a.logged());
        assertArrayEquals(address(3, 1, 0x1000, 0x2004, 0x3002, 0x4000), a.encode());
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 0x100, 0x8000_0000})
    void shouldRefuseUnknownVringAddressFlags(int flags) {
        assertRefused("unknown vring address flags", () -> VringAddress.decode(address(0, flags, 0x1000, 0x2000, 0x3000, 0), 0));
    }

    @ParameterizedTest
    @CsvSource({"0x1008, 0x2000, 0x3000", "0x1001, 0x2000, 0x3000", "0x1000, 0x2002, 0x3000", "0x1000, 0x2001, 0x3000",
        "0x1000, 0x2000, 0x3001"})
    void shouldRefuseRingsAlignedBelowSixteenFourAndTwoBytes(long desc, long used, long avail) {
        assertRefused("misaligned rings", () -> VringAddress.decode(address(0, 0, desc, used, avail, 0), 0));
    }

    @Test
    void shouldRefuseAVringAddressOfAnotherSizeOrWithFds() {
        assertRefused("payload of 32 bytes", () -> VringAddress.decode(new byte[32], 0));
        assertRefused("payload of 48 bytes", () -> VringAddress.decode(new byte[48], 0));
        assertRefused("1 fds", () -> VringAddress.decode(new byte[40], 1));
    }

    // ---- vring fd word ---------------------------------------------------------------------------

    @Test
    void shouldDecodeTheIndexAndNoFdBitOfAVringFdWord() throws ProtocolException {
        assertEquals(new VringFd(0xFF, false), VringFd.decode(Payload.encodeU64(0xFF), 1));
        assertEquals(new VringFd(2, true), VringFd.decode(Payload.encodeU64(2 | VringFd.NOFD), 0));
        assertArrayEquals(Payload.encodeU64(2 | VringFd.NOFD), new VringFd(2, true).encode());
    }

    @ParameterizedTest
    @ValueSource(longs = {0x200, 0x1_0000_0000L, Long.MIN_VALUE})
    void shouldRefuseUnknownBitsInAVringFdWord(long word) {
        assertRefused("unknown bits", () -> VringFd.decode(Payload.encodeU64(word), 1));
    }

    @Test
    void shouldRefuseAVringFdWordWhoseFdCountDisagreesWithNoFd() {
        assertRefused("0 fds with NOFD false", () -> VringFd.decode(Payload.encodeU64(0), 0));
        assertRefused("2 fds with NOFD false", () -> VringFd.decode(Payload.encodeU64(0), 2));
        assertRefused("1 fds with NOFD true", () -> VringFd.decode(Payload.encodeU64(VringFd.NOFD), 1));
    }

    @Test
    void shouldRefuseAVringFdWordOfAnotherSize() {
        assertRefused("payload of 4 bytes", () -> VringFd.decode(new byte[4], 1));
    }
}
