package io.jvhost.cli.serve;

import io.jvhost.cli.Errors;
import io.jvhost.cli.Failure;
import io.jvhost.core.metrics.DeviceSnapshot;
import io.jvhost.core.metrics.QueueSnapshot;
import io.jvhost.core.metrics.Sample;
import io.jvhost.core.sys.UnixSockets;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.Channels;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code serve --control PATH}: a Unix socket (mode 0600) on which scripts and libvirt hooks manage
 * the devices of a running {@code serve}. One command per line, one JSON answer per line:
 * <pre>
 * {"command":"list"}                                  list
 * {"command":"add","device":{"type":"rng",...}}       add {"type":"rng",...}
 * {"command":"remove","name":"rng1"}                  remove rng1
 * {"command":"stats","name":"rng1"}                   stats rng1
 * </pre>
 * An answer is {@code {"ok":true,...}} or {@code {"ok":false,"error":"..."}}; a line that is no
 * command gets the latter and the connection stays open. A device to add is the same object as an
 * entry of the config's {@code devices} list, checked the same way (the config's top-level socket
 * access options apply to it too).
 */
final class ControlSocket implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger("jvhost.serve.control");
    private static final ObjectMapper JSON = new ObjectMapper();
    /** A command line longer than this is refused and the connection closed (nobody legitimate sends one). */
    static final int MAX_LINE = 64 * 1024;

    private final Path path;
    private final ServerSocketChannel server;
    private final DeviceHost host;
    private final Map<String, Node> defaults;
    private final List<SocketChannel> clients = new ArrayList<>();
    private volatile boolean closed;

    private ControlSocket(Path path, ServerSocketChannel server, DeviceHost host, Map<String, Node> defaults) {
        this.path = path;
        this.server = server;
        this.host = host;
        this.defaults = defaults;
    }

    /**
     * Listens on {@code path}, owner-only from the first moment: the socket is bound in a private
     * (0700) directory beside it, made 0600, then renamed into place. A stale socket file is
     * replaced; one a live process listens on is refused.
     */
    static ControlSocket open(Path path, DeviceHost host, Map<String, Node> defaults) throws IOException {
        Path dir = path.toAbsolutePath().getParent();
        if (!Files.isDirectory(dir)) {
            throw new Failure("--control " + path + ": directory " + dir + " does not exist (create it: mkdir -p " + dir + ")");
        }
        if (Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            if (UnixSockets.isListening(path)) {
                throw new Failure("--control " + path + " is in use: a running serve listens on it; stop that one or choose another path");
            }
            if (Files.isDirectory(path, LinkOption.NOFOLLOW_LINKS)) {
                throw new Failure("--control " + path + " is a directory; give the path of the socket to create");
            }
            Files.delete(path);
        }
        Path tmp = Files.createTempDirectory(dir, ".jvhost-control-", PosixFilePermissions.asFileAttribute(
                PosixFilePermissions.fromString("rwx------")));
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        try {
            Path bound = tmp.resolve("s");
            server.bind(UnixDomainSocketAddress.of(bound));
            Files.setPosixFilePermissions(bound, PosixFilePermissions.fromString("rw-------"));
            Files.move(bound, path, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException | RuntimeException e) {
            server.close();
            throw e;
        } finally {
            Files.deleteIfExists(tmp.resolve("s"));
            Files.deleteIfExists(tmp);
        }
        ControlSocket c = new ControlSocket(path, server, host, defaults);
        Thread.ofPlatform().name("jvhost-control-socket").daemon(true).start(c::accept);
        LOG.info("control socket {}", path);
        return c;
    }

    private void accept() {
        while (!closed) {
            SocketChannel client;
            try {
                client = server.accept();
            } catch (IOException e) {
                if (!closed) {
                    LOG.warn("control socket {}: {}", path, e.getMessage());
                }
                return;
            }
            synchronized (clients) {
                clients.add(client);
            }
            Thread.ofPlatform().name("jvhost-control-client").daemon(true).start(() -> serve(client));
        }
    }

    /** Answers one client's lines until it closes. A bad line gets an error answer, never more. */
    private void serve(SocketChannel client) {
        try (client;
             BufferedReader in = new BufferedReader(new InputStreamReader(Channels.newInputStream(client), StandardCharsets.UTF_8));
             OutputStream out = Channels.newOutputStream(client)) {
            StringBuilder line = new StringBuilder();
            for (int ch; (ch = in.read()) >= 0; ) {
                if (ch != '\n') {
                    if (line.length() >= MAX_LINE) {
                        write(out, error("a command line is at most " + MAX_LINE + " bytes; closing"));
                        return;
                    }
                    line.append((char) ch);
                    continue;
                }
                String command = line.toString().strip();
                line.setLength(0);
                if (!command.isEmpty()) {
                    write(out, answer(command));
                }
            }
        } catch (IOException e) {
            LOG.debug("control client: {}", e.getMessage());
        } finally {
            synchronized (clients) {
                clients.remove(client);
            }
        }
    }

    private static void write(OutputStream out, Map<String, Object> answer) throws IOException {
        out.write((JSON.writeValueAsString(answer) + "\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    /** The answer to one command line. Never throws. */
    Map<String, Object> answer(String line) {
        try {
            String verb;
            String argument;
            Node device = null;
            if (line.startsWith("{")) {
                Node n = Node.parse(line);
                Map<String, Node> m = n.map();
                if (m == null || m.get("command") == null) {
                    return error("a JSON command is an object with \"command\": list, add, remove or stats");
                }
                verb = m.get("command").text();
                argument = m.get("name") == null ? null : m.get("name").text();
                device = m.get("device");
            } else {
                int space = line.indexOf(' ');
                verb = space < 0 ? line : line.substring(0, space);
                argument = space < 0 ? null : line.substring(space + 1).strip();
                if (verb.equals("add") && argument != null) {
                    device = Node.parse(argument);
                }
            }
            return switch (verb) {
                case "list" -> list();
                case "add" -> add(device);
                case "remove" -> argument == null ? error("remove NAME: which device?")
                        : host.remove(argument) ? ok(Map.of("removed", argument)) : error("no device named " + argument);
                case "stats" -> argument == null ? error("stats NAME: which device?") : stats(argument);
                default -> error("unknown command '" + verb + "'; the commands are list, add DEVICE, remove NAME and stats NAME");
            };
        } catch (Node.SyntaxException e) {
            return error("column " + e.column + ": " + e.getMessage());
        } catch (Exception e) {
            return error(Errors.describe(e));
        }
    }

    private Map<String, Object> list() {
        List<Map<String, Object>> out = new ArrayList<>();
        for (DeviceHost.Hosted h : host.list()) {
            out.add(describe(h));
        }
        return ok(Map.of("devices", out));
    }

    private static Map<String, Object> describe(DeviceHost.Hosted h) {
        Map<String, Object> d = new LinkedHashMap<>();
        d.put("name", h.spec.name());
        d.put("type", h.spec.type());
        d.put("state", h.state.name().toLowerCase(java.util.Locale.ROOT));
        if (h.reason != null) {
            d.put("reason", h.reason);
        }
        d.put("sockets", h.spec.command().serveOptions().sockets().stream().map(Path::toString).toList());
        d.put("config", h.spec.source());
        return d;
    }

    private Map<String, Object> add(Node device) {
        if (device == null) {
            return error("add: give the device, e.g. add {\"type\":\"rng\",\"socket\":\"/run/jvhost/rng1.sock\"}");
        }
        List<ServeConfig.Problem> problems = new ArrayList<>();
        ServeConfig.DeviceSpec spec = ServeConfig.device(device, defaults, host.pollerNames(), "device", this::freeName, problems);
        if (spec == null || !problems.isEmpty()) {
            ServeConfig.Problem p = problems.get(0);
            return error(p.column() > 1 ? "column " + p.column() + ": " + p.message() : p.message());
        }
        try {
            host.add(spec, false);
        } catch (Exception e) {
            return error(spec.name() + ": " + Errors.describe(e));
        }
        LOG.info("device {} added", spec.name());
        return ok(Map.of("added", describe(host.get(spec.name()))));
    }

    /** {@code type0}, {@code type1}...: the first name of that type no device has. */
    private String freeName(String type) {
        for (int i = 0; ; i++) {
            if (host.get(type + i) == null) {
                return type + i;
            }
        }
    }

    private Map<String, Object> stats(String name) {
        DeviceHost.Hosted h = host.get(name);
        if (h == null) {
            return error("no device named " + name);
        }
        Map<String, Object> d = describe(h);
        d.remove("config");
        List<Map<String, Object>> backends = new ArrayList<>();
        for (DeviceHost.Source s : h.sources) {
            backends.add(snapshot(s.metrics()));
        }
        d.put("devices", backends);
        return ok(d);
    }

    /** A device snapshot as JSON: its device-wide values and each queue's, named as in /metrics. */
    static Map<String, Object> snapshot(DeviceSnapshot d) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("device", d.device());
        out.put("type", d.type());
        out.put("values", values(d.samples()));
        List<Map<String, Object>> queues = new ArrayList<>();
        for (QueueSnapshot q : d.queues()) {
            Map<String, Object> qm = new LinkedHashMap<>();
            qm.put("queue", q.queue());
            qm.putAll(values(q.samples()));
            queues.add(qm);
        }
        out.put("queues", queues);
        return out;
    }

    private static Map<String, Object> values(List<Sample> samples) {
        Map<String, Object> out = new LinkedHashMap<>();
        for (Sample s : samples) {
            String name = s.name() + (s.isCounter() ? "_total" : "")
                    + (s.label() == null ? "" : "{" + s.label() + "=\"" + s.labelValue() + "\"}");
            out.put(name, s.type() == Sample.Type.TIME_COUNTER ? (Object) s.exposedValue() : (Object) s.value());
        }
        return out;
    }

    private static Map<String, Object> ok(Map<String, Object> body) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", true);
        m.putAll(body);
        return m;
    }

    private static Map<String, Object> error(String message) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", false);
        m.put("error", message);
        return m;
    }

    /** Stops listening, removes the socket file, and ends every client's connection. */
    @Override
    public void close() {
        closed = true;
        try {
            server.close();
        } catch (IOException e) {
            LOG.warn("closing control socket: {}", e.getMessage());
        }
        synchronized (clients) {
            for (SocketChannel c : clients) {
                try {
                    c.close();
                } catch (IOException ignored) {
                    // closing anyway
                }
            }
        }
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            LOG.warn("cannot remove {}: {}", path, e.getMessage());
        }
    }
}
