package io.jvhost.testkit.fuzz;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeSet;
import java.util.function.Predicate;
import java.util.stream.Stream;

import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;

/**
 * Runs a {@link FuzzTarget}: first every kept input of its corpus, then new inputs until the time
 * budget is spent. New inputs are fresh byte arrays from a jqwik arbitrary (with its edge cases:
 * empty, all zeros, all ones) or mutations of inputs that reached a behaviour nothing before them
 * reached (see {@link Features}). The first failing input is minimized, written to the corpus
 * directory (its path printed, to be committed) and ends the run.
 *
 * <p>System properties: {@code jvhost.fuzz.seconds} (per target; 3 by default, 0 for no limit),
 * {@code jvhost.fuzz.targets} ({@code all} or a comma-separated list), {@code jvhost.fuzz.seed},
 * and {@code jvhost.fuzz.keep=behaviours[:REGEX]}, which also writes a minimized input per new
 * behaviour (matching REGEX) into the corpus (how the corpus was seeded). Test thread only.
 */
public final class Fuzzer {
    /**
     * What a run did: the figures the docs quote. {@code failure} is empty without a crash; else
     * the failure, where it was thrown and the minimized input in base64, so that a CI log alone
     * (whose machine, and the crash file saved there, are gone) is enough to reproduce it.
     */
    public record Report(String target, long inputs, int corpusInputs, int crashes, long millis,
                         Set<String> behaviours, long seed, List<Path> saved, String failure) {
        @Override
        public String toString() {
            return String.format(Locale.ROOT, "fuzz %s: %d inputs (%d from the corpus) in %.1f s, %d behaviours, crashes: %d%s%s",
                    target, inputs, corpusInputs, millis / 1000.0, behaviours.size(), crashes,
                    saved.isEmpty() ? "" : ", saved " + saved, failure.isEmpty() ? "" : "; " + failure);
        }
    }

    private static final Duration PROGRESS_EVERY = Duration.ofSeconds(10);
    private static final int MINIMIZE_ATTEMPTS = 400;
    private static final Duration MINIMIZE_TIME = Duration.ofSeconds(60);
    private static final int POOL_LIMIT = 2000;

    private final FuzzTarget target;
    private final SplittableRandom random;
    private final long seed;
    private final List<byte[]> pool = new ArrayList<>();
    private final Set<String> seen = new HashSet<>();
    private final java.util.regex.Pattern keep = keepPattern(System.getProperty("jvhost.fuzz.keep", ""));
    private final List<Path> saved = new ArrayList<>();
    private final Iterator<byte[]> fresh;

    private Fuzzer(FuzzTarget target) {
        this.target = target;
        this.seed = Long.getLong("jvhost.fuzz.seed", System.nanoTime());
        this.random = new SplittableRandom(seed);
        Arbitrary<byte[]> bytes = Arbitraries.bytes().array(byte[].class).ofMaxSize(target.maxLength());
        this.fresh = bytes.sampleStream().iterator();
    }

    /** {@code behaviours} keeps every new behaviour, {@code behaviours:REGEX} those matching; else none. */
    private static java.util.regex.Pattern keepPattern(String s) {
        if (s.equals("behaviours")) {
            return java.util.regex.Pattern.compile(".*");
        }
        return s.startsWith("behaviours:") ? java.util.regex.Pattern.compile(s.substring("behaviours:".length())) : null;
    }

    /** The time per target from {@code jvhost.fuzz.seconds}; null for no limit. */
    public static Duration budget() {
        long s = Long.getLong("jvhost.fuzz.seconds", 3);
        return s <= 0 ? null : Duration.ofSeconds(s);
    }

    /** Whether {@code jvhost.fuzz.targets} names {@code target} (or is {@code all} or unset). */
    public static boolean selected(String target) {
        String s = System.getProperty("jvhost.fuzz.targets", "all").trim();
        if (s.isEmpty() || s.equals("all")) {
            return true;
        }
        for (String t : s.split(",")) {
            if (t.trim().equals(target)) {
                return true;
            }
        }
        return false;
    }

    private static Path moduleDir() {
        return Path.of(System.getProperty("basedir", System.getProperty("user.dir")));
    }

    /** Where the kept inputs of {@code target} live: {@code src/test/resources/fuzz-corpus/<target>} of the module. */
    public static Path corpus(String target) {
        return moduleDir().resolve("src/test/resources/fuzz-corpus").resolve(target);
    }

    /** The kept inputs of {@code target}, by name. */
    public static List<Path> corpusFiles(String target) {
        Path dir = corpus(target);
        if (!Files.isDirectory(dir)) {
            return List.of();
        }
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.toString().endsWith(".bin")).sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Runs every kept input of {@code target}; fails naming the first that fails. Returns how many
     * ran. This is the regression test: a committed input stays fixed.
     */
    public static int replay(FuzzTarget target) throws Exception {
        int n = 0;
        for (Path p : corpusFiles(target.name())) {
            try {
                target.run(Files.readAllBytes(p), new Features());
            } catch (Exception | AssertionError e) {
                throw new AssertionError("kept input " + p + " fails again: " + e, e);
            }
            n++;
        }
        return n;
    }

    /** Fuzzes {@code target} for {@code budget} (null: until the process is stopped) and reports. */
    public static Report fuzz(FuzzTarget target, Duration budget) throws Exception {
        return new Fuzzer(target).run(budget);
    }

    private Report run(Duration budget) throws Exception {
        long start = System.nanoTime();
        long deadline = budget == null ? Long.MAX_VALUE : start + budget.toNanos();
        long nextProgress = start + PROGRESS_EVERY.toNanos();
        long inputs = 0;
        int corpusInputs = 0;
        int crashes = 0;
        String failed = "";
        System.out.printf("fuzz %s: seed %d, %s%n", target.name(), seed,
                budget == null ? "until stopped" : budget.toSeconds() + " s");
        List<byte[]> queue = new ArrayList<>();
        for (Path p : corpusFiles(target.name())) {
            queue.add(Files.readAllBytes(p));
        }
        corpusInputs = queue.size();
        for (int i = 0; ; i++) {
            byte[] input = i < queue.size() ? queue.get(i) : next();
            if (i >= queue.size() && System.nanoTime() - deadline >= 0) {
                break;
            }
            Features f = new Features();
            Throwable failure = attempt(input, f);
            inputs++;
            if (failure != null) {
                crashes++;
                failed = report(input, failure);
                break;
            }
            boolean added = false;
            for (String h : f.hits()) {
                if (seen.add(h)) {
                    if (!added && pool.size() < POOL_LIMIT) {
                        pool.add(input);
                        added = true;
                    }
                    if (keep != null && keep.matcher(h).matches() && i >= queue.size()) {
                        keep(h, input);
                    }
                }
            }
            if (System.nanoTime() - nextProgress >= 0) {
                nextProgress += PROGRESS_EVERY.toNanos();
                System.out.printf("fuzz %s: %d inputs, %d behaviours, crashes: %d%n", target.name(), inputs, seen.size(), crashes);
            }
        }
        Report r = new Report(target.name(), inputs, corpusInputs, crashes, (System.nanoTime() - start) / 1_000_000,
                new TreeSet<>(seen), seed, List.copyOf(saved), failed);
        System.out.println(r);
        write(r);
        return r;
    }

    /** Runs one input; the failure, or null. A failed target is reset for the next input. */
    private Throwable attempt(byte[] input, Features f) {
        try {
            target.run(input, f);
            return null;
        } catch (Exception | AssertionError e) {
            try {
                target.reset();
            } catch (Exception r) {
                throw new IllegalStateException("cannot reset " + target.name() + " after a failure", r);
            }
            return e;
        }
    }

    /** Minimizes, keeps and prints the failing input; returns the failure in one line for the report. */
    private String report(byte[] input, Throwable failure) throws Exception {
        byte[] small = minimize(input, in -> attempt(in, new Features()) != null);
        Path p = save("crash-" + hash(small), small);
        StringWriter trace = new StringWriter();
        failure.printStackTrace(new PrintWriter(trace));
        System.out.printf("fuzz %s: FAILURE on an input of %d bytes (minimized to %d): %s%n  kept as %s%n"
                        + "  commit it: the corpus replay test runs it from now on%n%s",
                target.name(), input.length, small.length, failure, p, trace);
        StringBuilder where = new StringBuilder();
        StackTraceElement[] frames = failure.getStackTrace();
        for (int i = 0; i < Math.min(4, frames.length); i++) {
            where.append(i == 0 ? " at " : " < ").append(frames[i]);
        }
        Base64.Encoder b64 = Base64.getEncoder();
        return failure.toString() + where + "; input (base64) " + b64.encodeToString(input)
                + (small.length == input.length ? "" : ", minimized " + b64.encodeToString(small));
    }

    private void keep(String behaviour, byte[] input) throws Exception {
        byte[] small = minimize(input, in -> {
            Features f = new Features();
            return attempt(in, f) == null && f.hits().contains(behaviour);
        });
        save(behaviour.replaceAll("[^A-Za-z0-9_.-]", "_"), small);
    }

    private Path save(String name, byte[] input) throws IOException {
        Path dir = corpus(target.name());
        Files.createDirectories(dir);
        Path p = dir.resolve(name + ".bin");
        Files.write(p, input);
        saved.add(p);
        return p;
    }

    /**
     * A smaller input on which {@code still} holds: chunks cut out (halving their size), then bytes
     * zeroed; bounded in attempts and time.
     */
    private static byte[] minimize(byte[] input, Predicate<byte[]> still) {
        long deadline = System.nanoTime() + MINIMIZE_TIME.toNanos();
        int attempts = 0;
        byte[] best = input;
        for (int chunk = Math.max(1, best.length / 2); chunk >= 1; chunk /= 2) {
            for (int at = 0; at < best.length && attempts < MINIMIZE_ATTEMPTS && System.nanoTime() < deadline; ) {
                int cut = Math.min(chunk, best.length - at);
                byte[] c = new byte[best.length - cut];
                System.arraycopy(best, 0, c, 0, at);
                System.arraycopy(best, at + cut, c, at, best.length - at - cut);
                attempts++;
                if (still.test(c)) {
                    best = c;
                } else {
                    at += cut;
                }
            }
        }
        for (int i = 0; i < best.length && attempts < MINIMIZE_ATTEMPTS && System.nanoTime() < deadline; i++) {
            if (best[i] != 0) {
                byte[] c = best.clone();
                c[i] = 0;
                attempts++;
                if (still.test(c)) {
                    best = c;
                }
            }
        }
        return best;
    }

    private byte[] next() {
        if (pool.isEmpty() || random.nextInt(4) == 0) {
            return fresh.next();
        }
        byte[] b = pool.get(random.nextInt(pool.size())).clone();
        int rounds = 1 + random.nextInt(4);
        for (int r = 0; r < rounds; r++) {
            b = mutate(b);
        }
        return b.length > target.maxLength() ? java.util.Arrays.copyOf(b, target.maxLength()) : b;
    }

    private static final long[] INTERESTING = {0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000,
            0x7FFF_FFFFL, 0x8000_0000L, 0xFFFF_FFFFL, Long.MAX_VALUE, Long.MIN_VALUE, -1, -16, 512, 4096};

    private byte[] mutate(byte[] b) {
        int n = b.length;
        switch (random.nextInt(n == 0 ? 1 : 8)) {
            case 0 -> { // insert random bytes
                int at = random.nextInt(n + 1), k = 1 + random.nextInt(16);
                byte[] c = new byte[n + k];
                System.arraycopy(b, 0, c, 0, at);
                for (int i = 0; i < k; i++) {
                    c[at + i] = (byte) random.nextInt(256);
                }
                System.arraycopy(b, at, c, at + k, n - at);
                return c;
            }
            case 1 -> b[random.nextInt(n)] ^= (byte) (1 << random.nextInt(8));
            case 2 -> b[random.nextInt(n)] = (byte) random.nextInt(256);
            case 3 -> { // an interesting value, little-endian, 1 to 8 bytes wide
                long v = INTERESTING[random.nextInt(INTERESTING.length)];
                int at = random.nextInt(n), w = 1 << random.nextInt(4);
                for (int i = 0; i < w && at + i < n; i++) {
                    b[at + i] = (byte) (v >>> (8 * i));
                }
            }
            case 4 -> { // cut a range
                int at = random.nextInt(n), k = 1 + random.nextInt(Math.min(16, n - at));
                byte[] c = new byte[n - k];
                System.arraycopy(b, 0, c, 0, at);
                System.arraycopy(b, at + k, c, at, n - at - k);
                return c;
            }
            case 5 -> { // duplicate a range
                int at = random.nextInt(n), k = 1 + random.nextInt(Math.min(32, n - at));
                byte[] c = new byte[n + k];
                System.arraycopy(b, 0, c, 0, at + k);
                System.arraycopy(b, at, c, at + k, n - at);
                return c;
            }
            case 6 -> { // splice with another kept input
                byte[] o = pool.isEmpty() ? b : pool.get(random.nextInt(pool.size()));
                int at = random.nextInt(n + 1), from = random.nextInt(o.length + 1);
                byte[] c = new byte[at + o.length - from];
                System.arraycopy(b, 0, c, 0, at);
                System.arraycopy(o, from, c, at, o.length - from);
                return c;
            }
            default -> b[random.nextInt(n)] += (byte) (random.nextInt(9) - 4);
        }
        return b;
    }

    private static String hash(byte[] b) {
        long h = 0xcbf29ce484222325L;
        for (byte x : b) {
            h = (h ^ (x & 0xFF)) * 0x100000001b3L;
        }
        return String.format("%016x", h);
    }

    /** Writes the figures to {@code target/fuzz-reports/<target>.txt} for {@code ./jvhost fuzz} to sum up. */
    private static void write(Report r) throws IOException {
        Path dir = moduleDir().resolve("target/fuzz-reports");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve(r.target() + ".txt"), String.format(Locale.ROOT,
                "target=%s%ninputs=%d%ncorpus=%d%ncrashes=%d%nseconds=%.1f%nbehaviours=%d%nseed=%d%nsaved=%s%nreached=%s%n",
                r.target(), r.inputs(), r.corpusInputs(), r.crashes(), r.millis() / 1000.0, r.behaviours().size(), r.seed(),
                String.join(" ", r.saved().stream().map(Path::toString).toList()), String.join(" ", r.behaviours())));
    }
}
