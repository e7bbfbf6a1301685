package io.jvhost.testkit.fuzz;

import java.util.Set;
import java.util.TreeSet;

/**
 * What one fuzz input made the device do (a refusal kind, a status, a queue state): the fuzzer
 * keeps inputs that reach a behaviour no earlier input reached and mutates them further, which
 * steers it towards deep states without code instrumentation. Test thread only.
 */
public final class Features {
    private final Set<String> hits = new TreeSet<>();

    public void hit(String feature) {
        hits.add(feature);
    }

    /** {@code prefix + "-" + value}, for counters and enums. */
    public void hit(String prefix, Object value) {
        hits.add(prefix + "-" + value);
    }

    public Set<String> hits() {
        return hits;
    }
}
