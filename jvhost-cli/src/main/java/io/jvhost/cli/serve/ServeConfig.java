package io.jvhost.cli.serve;

import io.jvhost.cli.DeviceCommand;
import io.jvhost.cli.Failure;
import io.jvhost.cli.blk.BlkCommand;
import io.jvhost.cli.net.NetCommand;
import io.jvhost.cli.rng.RngCommand;
import io.jvhost.prometheus.MetricsServer;

import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.ParameterException;

/**
 * A {@code jvhost serve} config: process-wide settings and the devices. A device is a mapping whose
 * keys are its command's option names without {@code --} ({@code socket}, {@code file},
 * {@code queues}, {@code queue-map}, ...), plus {@code type} (blk, net, rng), an optional
 * {@code name}, and for net {@code switch: true} or {@code switch: NAME}. Each device becomes the
 * argument list of its command and goes through that command's picocli parsing, converters and
 * {@link DeviceCommand#check()}: an option means and is checked the same in a file as on the command
 * line. Every problem is kept with the line and column of the key it is about.
 */
final class ServeConfig {
    /** What is wrong, and where (1-based). */
    record Problem(int line, int column, String message) {
        String format(String file) {
            return file + ":" + line + ":" + column + ": " + message;
        }
    }

    /**
     * One device of the config, parsed and checked, not yet opened.
     *
     * @param switchName the shared switch its NICs join, or null
     * @param pollerName the shared poller all its queues run on, or null for pollers of its own
     * @param source     the device as written, for {@code list}
     */
    record DeviceSpec(String name, String type, String switchName, String pollerName, DeviceCommand command, Object source) {}

    /**
     * A shared poller of the {@code pollers:} section.
     *
     * @param idle adaptive, event or busy, as {@code --idle}
     * @param cpu  the CPU it is pinned to, or -1
     */
    record PollerSpec(String name, String idle, int cpu) {}

    static final String DEFAULT_SWITCH = "default";
    private static final Set<String> TYPES = Set.of("blk", "net", "rng");
    /** Top-level keys that are also device options: defaults for every device that does not set them. */
    private static final List<String> ACCESS_KEYS = List.of("socket-mode", "socket-group", "allow-uid");
    private static final Set<String> TOP_KEYS = Set.of("devices", "pollers", "metrics", "latency", "trace", "control",
            "handover", "socket-mode", "socket-group", "allow-uid");
    /** Device options about pollers of the device's own, which a device on a shared poller does not take. */
    private static final List<String> OWN_POLLER_KEYS = List.of("queue-map", "busy-poll", "idle", "poller-cpus");
    /** How many queues one shared poller takes. */
    static final int POLLER_SLOTS = 256;
    private static final Set<String> PROCESS_KEYS = Set.of("metrics", "latency", "trace", "control", "handover");

    final List<DeviceSpec> devices = new ArrayList<>();
    final Map<String, PollerSpec> pollers = new LinkedHashMap<>();
    final List<Problem> problems = new ArrayList<>();
    final Map<String, Node> defaults = new LinkedHashMap<>();
    InetSocketAddress metrics;
    boolean latency, trace;
    Path control;
    /** Live upgrade's socket ({@code handover:}), or null. */
    Path handover;

    /** Reads a whole config; never throws: what is wrong is in {@link #problems}. */
    static ServeConfig read(String text) {
        ServeConfig c = new ServeConfig();
        Node root;
        try {
            root = Node.parse(text);
        } catch (Node.SyntaxException e) {
            c.problems.add(new Problem(e.line, e.column, e.getMessage()));
            return c;
        }
        Map<String, Node> top = root.map();
        if (top == null) {
            c.problems.add(new Problem(root.line(), root.column(), "a config is a mapping with a 'devices' list"
                    + " (e.g. devices: [{type: rng, socket: /run/jvhost/rng.sock}])"));
            return c;
        }
        for (Map.Entry<String, Node> e : top.entrySet()) {
            String key = e.getKey();
            Node v = e.getValue();
            if (!TOP_KEYS.contains(key)) {
                c.problems.add(new Problem(v.line(), v.column(), "unknown key '" + key + "'; the top level has "
                        + String.join(", ", new java.util.TreeSet<>(TOP_KEYS))));
            } else if (ACCESS_KEYS.contains(key)) {
                c.defaults.put(key, v);
            } else if (key.equals("metrics")) {
                try {
                    c.metrics = MetricsServer.parse(v.text());
                } catch (IllegalArgumentException ex) {
                    c.problems.add(new Problem(v.line(), v.column(), "metrics: " + ex.getMessage()));
                }
            } else if (key.equals("latency") || key.equals("trace")) {
                if (!(v.value() instanceof Boolean b)) {
                    c.problems.add(new Problem(v.line(), v.column(), key + ": true or false, got '" + v.text() + "'"));
                } else if (key.equals("latency")) {
                    c.latency = b;
                } else {
                    c.trace = b;
                }
            } else if (key.equals("pollers")) {
                c.readPollers(v);
            } else if (key.equals("control")) {
                c.control = onePath(v);
                if (c.control == null) {
                    c.problems.add(new Problem(v.line(), v.column(), "control: the path of the control socket"));
                }
            } else if (key.equals("handover")) {
                c.handover = onePath(v);
                if (c.handover == null) {
                    c.problems.add(new Problem(v.line(), v.column(), "handover: the path of the live-upgrade socket"));
                }
            }
        }
        Node devices = top.get("devices");
        if (devices == null || devices.list() == null || devices.list().isEmpty()) {
            Node at = devices != null ? devices : root;
            c.problems.add(new Problem(at.line(), at.column(), "'devices' must be a list of at least one device"
                    + " (e.g. devices: [{type: rng, socket: /run/jvhost/rng.sock}])"));
            return c;
        }
        Map<String, Integer> perType = new HashMap<>();
        Map<String, Node> names = new HashMap<>();
        Map<Path, Node> sockets = new HashMap<>();
        List<Node> list = devices.list();
        for (int i = 0; i < list.size(); i++) {
            Node d = list.get(i);
            int before = c.problems.size();
            DeviceSpec spec = device(d, c.defaults, c.pollers.keySet(), "devices[" + i + "]",
                    t -> t + (perType.merge(t, 1, Integer::sum) - 1), c.problems);
            if (spec == null || c.problems.size() > before) {
                continue;
            }
            Node nameAt = d.map().getOrDefault("name", d);
            if (names.putIfAbsent(spec.name(), nameAt) != null) {
                c.problems.add(new Problem(nameAt.line(), nameAt.column(), "devices[" + i + "]: name '" + spec.name()
                        + "' is taken by the device at line " + names.get(spec.name()).line() + "; give each device its own name"));
                continue;
            }
            for (Path s : spec.command().serveOptions().sockets()) {
                Node socketAt = d.map().getOrDefault("socket", d);
                Node first = sockets.putIfAbsent(s.toAbsolutePath().normalize(), socketAt);
                if (first != null) {
                    c.problems.add(new Problem(socketAt.line(), socketAt.column(), "devices[" + i + "] (" + spec.name()
                            + "): socket " + s + " is also the socket of the device at line " + first.line()));
                }
            }
            c.devices.add(spec);
        }
        return c;
    }

    /** {@code pollers: {NAME: {idle: MODE, cpu: N}, ...}}: shared poller threads devices name with {@code poller: NAME}. */
    private void readPollers(Node v) {
        Map<String, Node> m = v.map();
        if (m == null) {
            problems.add(new Problem(v.line(), v.column(), "pollers: a mapping of poller names to settings,"
                    + " e.g. pollers: {shared0: {idle: adaptive}}"));
            return;
        }
        Set<Integer> cpus = new java.util.HashSet<>();
        for (Map.Entry<String, Node> e : m.entrySet()) {
            Node p = e.getValue();
            String name = e.getKey();
            if (!name.matches("[A-Za-z0-9_.-]{1,32}")) {
                problems.add(new Problem(p.line(), p.column(), "pollers: name '" + name + "': 1..32 letters, digits, '-', '_' or '.'"));
                continue;
            }
            String idle = "adaptive";
            int cpu = -1;
            Map<String, Node> settings = p.value() == null || "".equals(p.value()) ? Map.of() : p.map();
            if (settings == null) {
                problems.add(new Problem(p.line(), p.column(), "pollers: " + name + ": a mapping of settings (idle, cpu), or nothing"));
                continue;
            }
            for (Map.Entry<String, Node> s : settings.entrySet()) {
                Node sv = s.getValue();
                if (s.getKey().equals("idle") && Set.of("adaptive", "event", "busy").contains(sv.text())) {
                    idle = sv.text();
                } else if (s.getKey().equals("idle")) {
                    problems.add(new Problem(sv.line(), sv.column(), "pollers: " + name + ": idle: adaptive, event or busy"
                            + " (as --idle), got '" + sv.text() + "'"));
                } else if (s.getKey().equals("cpu") && sv.text().matches("[0-9]{1,4}")) {
                    cpu = Integer.parseInt(sv.text());
                    if (!cpus.add(cpu)) {
                        problems.add(new Problem(sv.line(), sv.column(), "pollers: " + name + ": cpu " + cpu
                                + " is another poller's; each pinned poller needs a CPU of its own"));
                    }
                } else if (s.getKey().equals("cpu")) {
                    problems.add(new Problem(sv.line(), sv.column(), "pollers: " + name + ": cpu: a CPU number, got '" + sv.text() + "'"));
                } else {
                    problems.add(new Problem(sv.line(), sv.column(), "pollers: " + name + ": unknown setting '" + s.getKey()
                            + "' (a shared poller has idle: adaptive|event|busy and cpu: N)"));
                }
            }
            pollers.put(name, new PollerSpec(name, idle, cpu));
        }
    }

    /** A key's value as one path, or null when it is not one (a list, a map, or nothing after the colon). */
    private static Path onePath(Node v) {
        return v.isScalar() && v.value() != null && !v.text().isBlank() ? Path.of(v.text()) : null;
    }

    /**
     * Parses and checks one device (a config entry, or the object of a control-socket {@code add}),
     * adding what is wrong to {@code problems} (null back if it cannot even be parsed).
     *
     * @param defaults    top-level values of options every device inherits unless it sets them
     * @param pollerNames the shared pollers a device may name
     * @param where       how messages name it ({@code devices[2]})
     * @param defaultName the name of a device without {@code name}, from its type
     */
    static DeviceSpec device(Node d, Map<String, Node> defaults, Set<String> pollerNames, String where,
                             java.util.function.UnaryOperator<String> defaultName, List<Problem> problems) {
        Map<String, Node> m = d.map();
        if (m == null) {
            problems.add(new Problem(d.line(), d.column(), where + ": a device is a mapping of option names to values"
                    + " (e.g. {type: rng, socket: /run/jvhost/rng.sock})"));
            return null;
        }
        Node typeNode = m.get("type");
        if (typeNode == null || !TYPES.contains(typeNode.text())) {
            Node at = typeNode != null ? typeNode : d;
            problems.add(new Problem(at.line(), at.column(), where + ": 'type' must be blk, net or rng"
                    + (typeNode == null ? "" : ", got '" + typeNode.text() + "'")));
            return null;
        }
        String type = typeNode.text();
        Node nameNode = m.get("name");
        String name = nameNode != null ? nameNode.text() : defaultName.apply(type);
        if (nameNode != null && !name.matches("[A-Za-z0-9_.-]{1,64}")) {
            problems.add(new Problem(nameNode.line(), nameNode.column(), where + ": name '" + name
                    + "': 1..64 letters, digits, '-', '_' or '.'"));
            return null;
        }
        String label = where + " (" + name + ")";
        DeviceCommand command = switch (type) {
            case "blk" -> new BlkCommand();
            case "net" -> new NetCommand();
            default -> new RngCommand();
        };
        CommandLine cli = new CommandLine(command);
        Map<String, Node> given = new LinkedHashMap<>(m);
        boolean client = m.get("client") != null && Boolean.TRUE.equals(m.get("client").value());
        if (!client) {
            defaults.forEach(given::putIfAbsent);
        }
        List<String> args = new ArrayList<>();
        Map<String, Node> optionNodes = new LinkedHashMap<>();
        String switchName = null;
        String pollerName = null;
        int before = problems.size();
        for (Map.Entry<String, Node> e : given.entrySet()) {
            String key = e.getKey();
            Node v = e.getValue();
            if (key.equals("type") || key.equals("name")) {
                continue;
            }
            if (key.equals("poller")) {
                pollerName = v.isScalar() ? v.text() : null;
                if (!pollerNames.contains(pollerName)) {
                    problems.add(new Problem(v.line(), v.column(), label + ": poller: " + (pollerNames.isEmpty()
                            ? "no shared pollers are defined (add a top-level pollers: section)"
                            : "'" + pollerName + "' is none of the pollers section's (" + String.join(", ", pollerNames) + ")")));
                } else {
                    for (String own : OWN_POLLER_KEYS) {
                        if (m.containsKey(own)) {
                            Node other = m.get(own);
                            problems.add(new Problem(other.line(), other.column(), label + ": " + own + " is for pollers of"
                                    + " the device's own; on the shared poller '" + pollerName + "' all its queues run on that thread"
                                    + " (set idle and cpu in the pollers section)"));
                        }
                    }
                }
                continue;
            }
            if (PROCESS_KEYS.contains(key)) {
                problems.add(new Problem(v.line(), v.column(), label + ": '" + key
                        + "' is for the whole process: put it at the top level of the config"));
                continue;
            }
            OptionSpec option = key.equals("help") || key.equals("version") ? null : cli.getCommandSpec().findOption("--" + key);
            if (option == null || key.startsWith("-")) {
                problems.add(new Problem(v.line(), v.column(), label + ": unknown option '" + key + "' for a " + type
                        + " device (the keys are the options of ./jvhost " + type + " --help without --)"));
                continue;
            }
            optionNodes.put(key, v);
            if (key.equals("switch")) {
                if (Boolean.FALSE.equals(v.value())) {
                    continue;
                }
                if (v.value() == null || !v.isScalar()) {
                    problems.add(new Problem(v.line(), v.column(), label + ": switch: true (the shared switch) or the name of a switch"));
                    continue;
                }
                switchName = Boolean.TRUE.equals(v.value()) ? DEFAULT_SWITCH : v.text();
                args.add("--switch");
                continue;
            }
            List<Node> values = v.list() != null ? v.list() : List.of(v);
            for (Node one : values) {
                if (one.value() == null || !one.isScalar()) {
                    problems.add(new Problem(one.line(), one.column(), label + ": '" + key + "' takes "
                            + (one.value() == null ? "a value" : "a value or a list of values, not a mapping")));
                } else if (option.typeInfo().isBoolean()) {
                    if (!(one.value() instanceof Boolean b)) {
                        problems.add(new Problem(one.line(), one.column(), label + ": '" + key + "': true or false, got '" + one.text() + "'"));
                    } else if (b) {
                        args.add("--" + key);
                    }
                } else {
                    args.add("--" + key + "=" + one.text());
                }
            }
        }
        if (problems.size() > before) {
            return null;
        }
        try {
            cli.parseArgs(args.toArray(String[]::new));
            command.check();
            command.serveOptions().checkUsage();
        } catch (ParameterException | Failure e) {
            Node at = locate(e.getMessage(), optionNodes, d);
            boolean inherited = defaults.values().stream().anyMatch(n -> n == at) && m.values().stream().noneMatch(n -> n == at);
            Problem p = new Problem(at.line(), at.column(), (inherited ? "a default for every device" : label) + ": " + oneLine(e.getMessage()));
            if (!problems.contains(p)) { // a bad default is reported once, not per device
                problems.add(p);
            }
            return null;
        }
        return new DeviceSpec(name, type, switchName, pollerName, command, d.plain());
    }

    /** The node of the option a message is about (the longest option name it mentions), else {@code fallback}. */
    private static Node locate(String message, Map<String, Node> options, Node fallback) {
        Node best = fallback;
        int bestLength = 0;
        for (Map.Entry<String, Node> e : options.entrySet()) {
            if (e.getKey().length() > bestLength
                    && Pattern.compile("--" + Pattern.quote(e.getKey()) + "(?![A-Za-z0-9-])").matcher(message).find()) {
                best = e.getValue();
                bestLength = e.getKey().length();
            }
        }
        return best;
    }

    private static String oneLine(String message) {
        String m = message == null ? "" : message.strip().replaceAll("\\s*\\R\\s*", "; ");
        return m.startsWith("Error: ") ? m.substring("Error: ".length()) : m;
    }
}
