package io.jvhost.blk.nbd;

import java.net.URI;
import java.net.URISyntaxException;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * Where an NBD export is, in the URI form QEMU and libnbd use:
 * <ul>
 * <li>{@code nbd://HOST[:PORT]/EXPORT} (TCP, port 10809 by default; {@code nbd+tcp://} too)</li>
 * <li>{@code nbd+unix:///EXPORT?socket=PATH} (a Unix socket)</li>
 * <li>{@code nbds://...} and {@code nbds+unix://...}: the same over TLS</li>
 * </ul>
 * An empty export name asks for the server's default export. Pure: parsing only, no I/O.
 *
 * @param tls    whether the connection must be upgraded with NBD_OPT_STARTTLS
 * @param host   TCP host name or address literal (no brackets), or null for a Unix socket
 * @param port   TCP port, or 0 for a Unix socket
 * @param socket Unix socket path, or null for TCP
 * @param export export name, percent-decoded, possibly empty
 */
public record NbdUri(boolean tls, String host, int port, Path socket, String export) {
    public static final int DEFAULT_PORT = 10809;
    /** Longest export name the protocol allows (bytes of UTF-8). */
    static final int MAX_NAME_BYTES = 4096;

    /** Parses {@code text}; throws {@link IllegalArgumentException} with a one-line reason. */
    public static NbdUri parse(String text) {
        if (text == null || text.isBlank()) {
            throw bad(text, "empty");
        }
        URI uri;
        try {
            uri = new URI(text.trim());
        } catch (URISyntaxException e) {
            if (text.trim().endsWith("://")) {
                throw bad(text, "missing host");
            }
            throw bad(text, e.getReason() + (e.getIndex() >= 0 ? " at index " + e.getIndex() : ""));
        }
        String scheme = uri.getScheme();
        if (scheme == null) {
            throw bad(text, "expected nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, nbds://... or nbds+unix://...");
        }
        boolean tls;
        boolean unix;
        switch (scheme.toLowerCase(java.util.Locale.ROOT)) {
            case "nbd", "nbd+tcp" -> { tls = false; unix = false; }
            case "nbds", "nbds+tcp" -> { tls = true; unix = false; }
            case "nbd+unix" -> { tls = false; unix = true; }
            case "nbds+unix" -> { tls = true; unix = true; }
            default -> throw bad(text, "unknown scheme '" + scheme + "' (nbd, nbds, nbd+unix or nbds+unix)");
        }
        if (uri.isOpaque()) {
            throw bad(text, "expected " + scheme + "://...");
        }
        if (uri.getRawFragment() != null) {
            throw bad(text, "a fragment (#...) means nothing here");
        }
        if (uri.getRawUserInfo() != null) {
            throw bad(text, "user information (user@) is not supported");
        }
        String path = uri.getPath() == null ? "" : uri.getPath();
        String export = path.startsWith("/") ? path.substring(1) : path;
        if (export.indexOf('\0') >= 0) {
            throw bad(text, "the export name contains NUL");
        }
        if (export.getBytes(StandardCharsets.UTF_8).length > MAX_NAME_BYTES) {
            throw bad(text, "the export name is longer than " + MAX_NAME_BYTES + " bytes");
        }
        String socket = null;
        String query = uri.getRawQuery();
        if (query != null && !query.isEmpty()) {
            for (String pair : query.split("&")) {
                int eq = pair.indexOf('=');
                String key = decode(text, eq < 0 ? pair : pair.substring(0, eq));
                String value = eq < 0 ? "" : decode(text, pair.substring(eq + 1));
                if (unix && key.equals("socket")) {
                    if (socket != null) {
                        throw bad(text, "socket= given twice");
                    }
                    socket = value;
                } else {
                    throw bad(text, "unknown query parameter '" + key + "'"
                            + (unix ? " (only socket=PATH)" : " (a TCP URI takes none)"));
                }
            }
        }
        if (unix) {
            if (uri.getRawAuthority() != null && !uri.getRawAuthority().isEmpty()) {
                throw bad(text, "a Unix socket URI has no host: write " + scheme + ":///EXPORT?socket=PATH");
            }
            if (socket == null || socket.isEmpty()) {
                throw bad(text, "missing ?socket=PATH");
            }
            return new NbdUri(tls, null, 0, Path.of(socket), export);
        }
        String host = uri.getHost();
        if (host == null || host.isEmpty()) {
            // java.net.URI leaves host null when the authority is not a valid server authority.
            String authority = uri.getRawAuthority();
            throw bad(text, authority == null || authority.isEmpty() ? "missing host"
                    : "bad host or port '" + authority + "'");
        }
        if (host.startsWith("[") && host.endsWith("]")) {
            host = host.substring(1, host.length() - 1);
        }
        int port = uri.getPort();
        if (port == -1) {
            String authority = uri.getRawAuthority();
            if (authority.endsWith(":")) {
                throw bad(text, "empty port");
            }
            port = DEFAULT_PORT;
        }
        if (port < 1 || port > 65535) {
            throw bad(text, "port out of range: " + port);
        }
        return new NbdUri(tls, host, port, null, export);
    }

    public boolean unix() {
        return socket != null;
    }

    /** The URI again, for messages: {@code nbd://host:port/export} or {@code nbd+unix:///export?socket=path}. */
    @Override
    public String toString() {
        String s = tls ? "nbds" : "nbd";
        if (unix()) {
            return s + "+unix:///" + export + "?socket=" + socket;
        }
        String h = host.indexOf(':') >= 0 ? "[" + host + "]" : host;
        return s + "://" + h + ":" + port + "/" + export;
    }

    private static String decode(String text, String s) {
        try {
            return URLDecoder.decode(s.replace("+", "%2B"), StandardCharsets.UTF_8);
        } catch (IllegalArgumentException e) {
            throw bad(text, "bad percent-encoding in '" + s + "'");
        }
    }

    private static IllegalArgumentException bad(String text, String why) {
        return new IllegalArgumentException("bad NBD URI '" + text + "': " + why);
    }
}
