package io.jvhost.net;

import io.jvhost.testkit.fuzz.Fuzzer;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Fuzzes the virtio-net transmit and receive paths ({@link NetFuzzTarget}): the kept inputs every
 * run, then new ones for {@code -Djvhost.fuzz.seconds} (3 by default; {@code ./jvhost fuzz} for longer).
 */
@Tag("fuzz")
class NetFuzzTest {
    @Test
    void shouldCarryEveryKeptFrameInputWithoutAFault() throws Exception {
        try (NetFuzzTarget t = new NetFuzzTarget()) {
            assertTrue(Fuzzer.replay(t) > 0, "the corpus " + Fuzzer.corpus(t.name()) + " is empty");
        }
    }

    @Test
    void shouldCarryFramesWithoutAFaultWhenTheDriverPostsRandomChains() throws Exception {
        assumeTrue(Fuzzer.selected("net"));
        try (NetFuzzTarget t = new NetFuzzTarget()) {
            Fuzzer.Report r = Fuzzer.fuzz(t, Fuzzer.budget());
            assertEquals(0, r.crashes(), r.toString());
            assertTrue(r.inputs() > r.corpusInputs(), "no new input ran: " + r);
        }
    }
}
