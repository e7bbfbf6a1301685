package io.jvhost.testkit.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Base64;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * A crash found under CI must be reproducible from the CI log alone: that machine, and the crash
 * file the fuzzer saved on it, are gone by the time anyone reads the log.
 */
class FuzzerReportTest {
    /** Fails on any input holding the byte 0x42, as a device with a bug would. */
    static final class FailsOn42 implements FuzzTarget {
        @Override
        public String name() {
            return "fuzzer-report-test";
        }

        @Override
        public int maxLength() {
            return 64;
        }

        @Override
        public void run(byte[] input, Features features) {
            for (byte b : input) {
                if (b == 0x42) {
                    throw new IllegalStateException("the byte 0x42 reached the device");
                }
            }
            features.hit("passed");
        }

        @Override
        public void reset() {
        }

        @Override
        public void close() {
        }
    }

    @Test
    void shouldPutTheFailureAndTheFailingInputIntoTheReport() throws Exception {
        Fuzzer.Report r = Fuzzer.fuzz(new FailsOn42(), Duration.ofSeconds(30));
        try {
            assertEquals(1, r.crashes(), r.toString());
            String text = r.toString();
            assertTrue(text.contains("IllegalStateException: the byte 0x42 reached the device at "), text);
            assertTrue(text.contains("FuzzerReportTest$FailsOn42.run"), "names where it was thrown: " + text);
            Matcher m = Pattern.compile("input \\(base64\\) ([A-Za-z0-9+/=]+)").matcher(text);
            assertTrue(m.find(), text);
            byte[] input = Base64.getDecoder().decode(m.group(1));
            assertTrue(new String(input, java.nio.charset.StandardCharsets.ISO_8859_1).indexOf(0x42) >= 0,
                    "the input printed is one that fails: " + text);
        } finally {
            for (Path p : r.saved()) {
                Files.deleteIfExists(p);
            }
            Files.deleteIfExists(Fuzzer.corpus("fuzzer-report-test"));
        }
    }
}
