package io.jvhost.core.runtime;

import io.jvhost.testkit.fuzz.Fuzzer;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Fuzzes the message decoder and session state machine with sequences of messages
 * ({@link MessageFuzzTarget}): the kept inputs every run, then new ones for
 * {@code -Djvhost.fuzz.seconds} (3 by default; {@code ./jvhost fuzz} for longer).
 */
@Tag("fuzz")
class MessageFuzzTest {
    @Test
    void shouldSurviveEveryKeptMessageSequence() throws Exception {
        try (MessageFuzzTarget t = new MessageFuzzTarget()) {
            assertTrue(Fuzzer.replay(t) > 0, "the corpus " + Fuzzer.corpus(t.name()) + " is empty");
        }
    }

    @Test
    void shouldKeepServingWhenAFrontendSendsRandomMessageSequences() throws Exception {
        assumeTrue(Fuzzer.selected("messages"));
        try (MessageFuzzTarget t = new MessageFuzzTarget()) {
            Fuzzer.Report r = Fuzzer.fuzz(t, Fuzzer.budget());
            assertEquals(0, r.crashes(), r.toString());
            assertTrue(r.inputs() > r.corpusInputs(), "no new input ran: " + r);
        }
    }
}
