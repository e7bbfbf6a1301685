package io.jvhost.testkit.guest;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Resolves module names to {@code .ko} files of one kernel, with their dependencies, in the
 * order {@code insmod} must load them. Reads {@code modules.dep} and {@code modules.builtin}
 * directly because the guest has no modprobe database.
 *
 * <p>Immutable after {@link #load}; any thread.
 */
public final class KernelModules {

    private final Path moduleDir;
    /** Normalized module name to its path relative to {@link #moduleDir}. */
    private final Map<String, String> pathByName;
    /** Relative module path to the relative paths it depends on. */
    private final Map<String, List<String>> depsByPath;
    private final Set<String> builtin;

    private KernelModules(Path moduleDir, Map<String, String> pathByName,
            Map<String, List<String>> depsByPath, Set<String> builtin) {
        this.moduleDir = moduleDir;
        this.pathByName = pathByName;
        this.depsByPath = depsByPath;
        this.builtin = builtin;
    }

    /** Reads {@code /lib/modules/<version>}-style directory {@code moduleDir}. */
    public static KernelModules load(Path moduleDir) throws IOException {
        Map<String, String> pathByName = new HashMap<>();
        Map<String, List<String>> depsByPath = new HashMap<>();
        for (String line : Files.readAllLines(moduleDir.resolve("modules.dep"))) {
            int colon = line.indexOf(':');
            if (colon <= 0) {
                continue;
            }
            String path = line.substring(0, colon).trim();
            List<String> deps = new ArrayList<>();
            for (String dep : line.substring(colon + 1).trim().split("\\s+")) {
                if (!dep.isEmpty()) {
                    deps.add(dep);
                }
            }
            pathByName.put(nameOf(path), path);
            depsByPath.put(path, deps);
        }
        Set<String> builtin = new HashSet<>();
        Path builtinFile = moduleDir.resolve("modules.builtin");
        if (Files.isRegularFile(builtinFile)) {
            for (String line : Files.readAllLines(builtinFile)) {
                if (!line.isBlank()) {
                    builtin.add(nameOf(line.trim()));
                }
            }
        }
        return new KernelModules(moduleDir, pathByName, depsByPath, builtin);
    }

    /**
     * Returns the absolute module files to load, dependencies first, each once. Modules built
     * into the kernel are skipped.
     *
     * @throws IllegalArgumentException if a name is neither a module nor built in
     */
    public List<Path> loadOrder(List<String> names) {
        LinkedHashSet<String> ordered = new LinkedHashSet<>();
        for (String name : names) {
            String key = normalize(name);
            String path = pathByName.get(key);
            if (path == null) {
                if (builtin.contains(key)) {
                    continue;
                }
                throw new IllegalArgumentException("kernel module " + name + " not found in "
                        + moduleDir.resolve("modules.dep"));
            }
            visit(path, ordered, new HashSet<>());
        }
        List<Path> files = new ArrayList<>(ordered.size());
        for (String path : ordered) {
            files.add(moduleDir.resolve(path));
        }
        return files;
    }

    // Depth-first so each dependency precedes its users whatever order modules.dep lists them
    // in; deps are visited last-listed first, as modprobe does.
    private void visit(String path, LinkedHashSet<String> ordered, Set<String> inProgress) {
        if (ordered.contains(path) || !inProgress.add(path)) {
            return; // done, or a cycle that insmod could not satisfy anyway
        }
        List<String> deps = depsByPath.getOrDefault(path, List.of());
        for (int i = deps.size() - 1; i >= 0; i--) {
            visit(deps.get(i), ordered, inProgress);
        }
        ordered.add(path);
    }

    /** {@code kernel/drivers/char/hw_random/virtio-rng.ko.xz} -> {@code virtio_rng}. */
    public static String nameOf(String path) {
        String file = path.substring(path.lastIndexOf('/') + 1);
        int ko = file.indexOf(".ko");
        return normalize(ko < 0 ? file : file.substring(0, ko));
    }

    // The kernel treats '-' and '_' in module names as the same character.
    private static String normalize(String name) {
        return name.replace('-', '_');
    }
}
