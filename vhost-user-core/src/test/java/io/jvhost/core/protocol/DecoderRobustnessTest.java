package io.jvhost.core.protocol;

import java.util.List;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.constraints.IntRange;

/**
 * Whatever the bytes and the fd count, every decoder either returns a record or throws
 * {@link ProtocolException}: nothing else escapes the codec, so a fuzzer can call it directly.
 */
class DecoderRobustnessTest {
    @FunctionalInterface
    interface Decoder {
        Object decode(byte[] payload, int fdCount) throws ProtocolException;
    }

    private static final List<Decoder> DECODERS = List.of(VringState::decode, VringAddress::decode, VringFd::decode,
            MemoryTable::decode, RegionDescription::decodeAdd, RegionDescription::decodeRemove, LogBase::decode,
            ConfigRequest::decode, InflightRequest::decodeGet, InflightRequest::decodeSet, Payload::decodeU64);

    @Provide
    Arbitrary<byte[]> payloads() {
        // Mostly the sizes the decoders look for, so the checks past the size check run too.
        Arbitrary<Integer> sizes = Arbitraries.frequencyOf(
                net.jqwik.api.Tuple.of(4, Arbitraries.of(0, 8, 16, 20, 24, 40, 72, 264, 268)),
                net.jqwik.api.Tuple.of(1, Arbitraries.integers().between(0, 400)));
        return sizes.flatMap(n -> Arbitraries.bytes().array(byte[].class).ofSize(n));
    }

    @Property(tries = 3000)
    void shouldOnlyEverReturnARecordOrThrowAProtocolException(@ForAll("payloads") byte[] payload,
                                                             @ForAll @IntRange(min = 0, max = 9) int fdCount) {
        for (Decoder d : DECODERS) {
            try {
                d.decode(payload, fdCount);
            } catch (ProtocolException expected) {
                // refused: fine
            }
        }
    }

    @Property(tries = 1000)
    void shouldDecodeAnyTwelveBytesAsAHeaderAndCheckThemWithoutAnythingElseEscaping(@ForAll @net.jqwik.api.constraints.Size(12) byte[] bytes) {
        try {
            Header.decode(bytes).checkRequest();
        } catch (ProtocolException expected) {
            // refused: fine
        }
    }
}
