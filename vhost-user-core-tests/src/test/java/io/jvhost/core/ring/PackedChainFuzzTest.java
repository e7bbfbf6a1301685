package io.jvhost.core.ring;

import io.jvhost.testkit.fuzz.Fuzzer;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Fuzzes the packed ring ({@link PackedChainFuzzTarget}): the kept inputs every run, then
 * new ones for {@code -Djvhost.fuzz.seconds} (3 by default; {@code ./jvhost fuzz} for longer).
 */
@Tag("fuzz")
class PackedChainFuzzTest {
    @Test
    void shouldHandEveryKeptPackedRingInputOnlyBuffersInsideGuestMemory() throws Exception {
        try (PackedChainFuzzTarget t = new PackedChainFuzzTarget()) {
            assertTrue(Fuzzer.replay(t) > 0, "the corpus " + Fuzzer.corpus(t.name()) + " is empty");
        }
    }

    @Test
    void shouldHandOnlyBuffersInsideGuestMemoryWhenTheDriverWritesRandomPackedRings() throws Exception {
        assumeTrue(Fuzzer.selected("packed-chains"));
        try (PackedChainFuzzTarget t = new PackedChainFuzzTarget()) {
            Fuzzer.Report r = Fuzzer.fuzz(t, Fuzzer.budget());
            assertEquals(0, r.crashes(), r.toString());
            assertTrue(r.inputs() > r.corpusInputs(), "no new input ran: " + r);
        }
    }
}
