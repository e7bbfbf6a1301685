package io.jvhost.core.ring;

import io.jvhost.testkit.fuzz.Fuzzer;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Fuzzes the descriptor-chain walker ({@link ChainFuzzTarget}): the kept inputs every run, then
 * new ones for {@code -Djvhost.fuzz.seconds} (3 by default; {@code ./jvhost fuzz} for longer).
 */
@Tag("fuzz")
class ChainFuzzTest {
    @Test
    void shouldHandEveryKeptChainInputOnlyBuffersInsideGuestMemory() throws Exception {
        try (ChainFuzzTarget t = new ChainFuzzTarget()) {
            assertTrue(Fuzzer.replay(t) > 0, "the corpus " + Fuzzer.corpus(t.name()) + " is empty");
        }
    }

    @Test
    void shouldHandOnlyBuffersInsideGuestMemoryWhenTheDriverWritesRandomRings() throws Exception {
        assumeTrue(Fuzzer.selected("chains"));
        try (ChainFuzzTarget t = new ChainFuzzTarget()) {
            Fuzzer.Report r = Fuzzer.fuzz(t, Fuzzer.budget());
            assertEquals(0, r.crashes(), r.toString());
            assertTrue(r.inputs() > r.corpusInputs(), "no new input ran: " + r);
        }
    }
}
