package io.jvhost.core;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The core library's shape, read from its sources, as docs/architecture.md states it: no class
 * over 400 lines, no cycle between its packages, and native calls (Linker, SymbolLookup) only in
 * {@code sys}. A change that breaks one of these fails here, not in a reviewer's reading.
 */
class CoreArchitectureTest {
    private static final Path SOURCES = Path.of("..", "vhost-user-core", "src", "main", "java");
    private static final Pattern CORE_REFERENCE = Pattern.compile("\\bio\\.jvhost\\.core\\.([a-z]+)\\.[A-Z]");
    private static final Pattern NATIVE_CALLS = Pattern.compile("\\b(Linker|SymbolLookup|FunctionDescriptor)\\b");
    /** Package name to its sources' text, one entry per file. */
    private static final Map<String, List<Source>> PACKAGES = new TreeMap<>();

    record Source(Path file, String text) {}

    @BeforeAll
    static void readSources() throws IOException {
        assertTrue(Files.isDirectory(SOURCES), "core sources at " + SOURCES.toAbsolutePath());
        try (Stream<Path> files = Files.walk(SOURCES.resolve("io/jvhost/core"))) {
            for (Path f : files.filter(p -> p.toString().endsWith(".java")).toList()) {
                String pkg = SOURCES.relativize(f.getParent()).toString().replace('/', '.');
                PACKAGES.computeIfAbsent(pkg, k -> new ArrayList<>()).add(new Source(f, Files.readString(f)));
            }
        }
        assertTrue(PACKAGES.size() > 5, "read " + PACKAGES.keySet());
    }

    @Test
    void shouldKeepEveryCoreClassAtFourHundredLinesOrFewer() {
        List<String> tooLong = new ArrayList<>();
        for (List<Source> sources : PACKAGES.values()) {
            for (Source s : sources) {
                long lines = s.text().lines().count();
                if (lines > 400) {
                    tooLong.add(s.file().getFileName() + " (" + lines + ")");
                }
            }
        }
        assertEquals(List.of(), tooLong);
    }

    @Test
    void shouldHaveNoCycleBetweenCorePackages() {
        Map<String, Set<String>> uses = new TreeMap<>();
        for (Map.Entry<String, List<Source>> e : PACKAGES.entrySet()) {
            Set<String> used = new TreeSet<>();
            for (Source s : e.getValue()) {
                Matcher m = CORE_REFERENCE.matcher(s.text());
                while (m.find()) {
                    String other = "io.jvhost.core." + m.group(1);
                    if (!other.equals(e.getKey())) {
                        used.add(other);
                    }
                }
            }
            uses.put(e.getKey(), used);
        }
        assertFalse(uses.get("io.jvhost.core.ring").isEmpty(), "the scan sees references: " + uses);
        for (String pkg : uses.keySet()) {
            Set<String> reached = new HashSet<>();
            List<String> todo = new ArrayList<>(uses.get(pkg));
            while (!todo.isEmpty()) {
                String next = todo.removeLast();
                if (reached.add(next)) {
                    todo.addAll(uses.getOrDefault(next, Set.of()));
                }
            }
            assertFalse(reached.contains(pkg), pkg + " depends on itself through " + uses.get(pkg) + "; all: " + uses);
        }
    }

    @Test
    void shouldMakeNativeCallsOnlyInSys() {
        Set<String> calling = new TreeSet<>();
        PACKAGES.forEach((pkg, sources) -> {
            for (Source s : sources) {
                if (NATIVE_CALLS.matcher(s.text()).find()) {
                    calling.add(pkg);
                }
            }
        });
        assertEquals(Set.of("io.jvhost.core.sys"), calling);
    }
}
