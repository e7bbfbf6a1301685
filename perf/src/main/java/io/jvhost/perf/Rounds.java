package io.jvhost.perf;

import java.util.ArrayList;
import java.util.List;

/**
 * Rounds of a comparison: every side runs once per round, A B C then C B A, so that drift on a
 * shared machine hits every side alike (and {@link Report#pairedRatio} can compare within a round).
 */
final class Rounds {
    private Rounds() {
    }

    /** One run of side {@code side} in round {@code round}. */
    @FunctionalInterface
    interface Trial<R> {
        R run(int side, int round) throws Exception;
    }

    /** Runs {@code rounds} rounds of {@code sides} sides; returns each side's runs in round order. */
    static <R> List<List<R>> alternate(int sides, int rounds, Trial<R> trial) throws Exception {
        List<List<R>> runs = new ArrayList<>();
        for (int s = 0; s < sides; s++) {
            runs.add(new ArrayList<>());
        }
        for (int r = 0; r < rounds; r++) {
            for (int k = 0; k < sides; k++) {
                int s = r % 2 == 0 ? k : sides - 1 - k;
                runs.get(s).add(trial.run(s, r));
            }
        }
        return runs;
    }
}
