package io.jvhost.cli.serve;

import com.fasterxml.jackson.core.JsonLocation;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A value of a YAML (or JSON) document with the line and column it starts at, so that every error
 * in a config file can name its place. A scalar's {@code value} is a Boolean, null, or the text as
 * written (numbers too); a sequence's a {@code List<Node>}; a mapping's a {@code Map<String, Node>} in file order,
 * where each value node's position is its key's.
 */
record Node(Object value, int line, int column) {
    private static final YAMLFactory YAML = YAMLFactory.builder().build();

    /** A syntax error, or a key given twice, at a place. */
    static final class SyntaxException extends Exception {
        final int line, column;

        SyntaxException(String message, int line, int column) {
            super(message);
            this.line = line;
            this.column = column;
        }
    }

    /** Parses {@code text} (YAML, or JSON, which is YAML too). */
    static Node parse(String text) throws SyntaxException {
        try (JsonParser p = YAML.createParser(text)) {
            JsonToken t = p.nextToken();
            if (t == null) {
                return new Node(null, 1, 1);
            }
            Node root = read(p);
            if (p.nextToken() != null) {
                JsonLocation l = p.currentTokenLocation();
                throw new SyntaxException("more than one document; a config is one", l.getLineNr(), l.getColumnNr());
            }
            return root;
        } catch (JsonProcessingException e) {
            JsonLocation l = e.getLocation();
            String message = withoutEcho(e.getOriginalMessage());
            throw new SyntaxException("not valid YAML: " + message, l == null ? 1 : l.getLineNr(), l == null ? 1 : l.getColumnNr());
        } catch (IOException e) {
            throw new SyntaxException(e.getMessage(), 1, 1);
        }
    }

    /** SnakeYAML's message on one line, without its "in 'reader', line..." marks and source echo (we give the place). */
    private static String withoutEcho(String message) {
        List<String> kept = new ArrayList<>();
        String[] lines = message.split("\\R");
        for (int i = 0; i < lines.length; i++) {
            if (lines[i].strip().startsWith("in 'reader'")) {
                i += 2; // the echoed source line and its caret
            } else if (!lines[i].isBlank()) {
                kept.add(lines[i].strip());
            }
        }
        return String.join("; ", kept);
    }

    private static Node read(JsonParser p) throws IOException, SyntaxException {
        JsonLocation at = p.currentTokenLocation();
        int line = at.getLineNr(), column = at.getColumnNr();
        return switch (p.currentToken()) {
            case START_OBJECT -> {
                Map<String, Node> map = new LinkedHashMap<>();
                for (JsonToken t = p.nextToken(); t != JsonToken.END_OBJECT; t = p.nextToken()) {
                    JsonLocation keyAt = p.currentTokenLocation();
                    String key = p.currentName();
                    p.nextToken();
                    Node value = read(p);
                    if (map.containsKey(key)) {
                        throw new SyntaxException("'" + key + "' given twice", keyAt.getLineNr(), keyAt.getColumnNr());
                    }
                    map.put(key, new Node(value.value, keyAt.getLineNr(), keyAt.getColumnNr()));
                }
                yield new Node(map, line, column);
            }
            case START_ARRAY -> {
                List<Node> list = new ArrayList<>();
                for (JsonToken t = p.nextToken(); t != JsonToken.END_ARRAY; t = p.nextToken()) {
                    list.add(read(p));
                }
                yield new Node(list, line, column);
            }
            case VALUE_TRUE -> new Node(Boolean.TRUE, line, column);
            case VALUE_FALSE -> new Node(Boolean.FALSE, line, column);
            case VALUE_NULL -> new Node(null, line, column);
            // Numbers as written: an option's own converter reads them (0660 is a mode, not YAML 1.1 octal).
            default -> new Node(p.getText(), line, column);
        };
    }

    @SuppressWarnings("unchecked")
    Map<String, Node> map() {
        return value instanceof Map ? (Map<String, Node>) value : null;
    }

    @SuppressWarnings("unchecked")
    List<Node> list() {
        return value instanceof List ? (List<Node>) value : null;
    }

    boolean isScalar() {
        return !(value instanceof Map) && !(value instanceof List);
    }

    /** The scalar as an option value. */
    String text() {
        return String.valueOf(value);
    }

    /** The value as plain Java objects (maps, lists, scalars), for echoing a device back as JSON. */
    Object plain() {
        if (value instanceof Map<?, ?> m) {
            Map<String, Object> out = new LinkedHashMap<>();
            m.forEach((k, v) -> out.put((String) k, ((Node) v).plain()));
            return out;
        }
        if (value instanceof List<?> l) {
            return l.stream().map(n -> ((Node) n).plain()).toList();
        }
        return value;
    }
}
