package io.jvhost.blk.nbd;

import java.nio.file.Path;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class NbdUriTest {

    @Test
    void shouldTakeHostPortAndExportFromATcpUri() {
        assertEquals(new NbdUri(false, "storage.example", 10900, null, "disk0"), NbdUri.parse("nbd://storage.example:10900/disk0"));
    }

    @Test
    void shouldDefaultToPort10809AndTheDefaultExport() {
        assertEquals(new NbdUri(false, "10.0.0.7", 10809, null, ""), NbdUri.parse("nbd://10.0.0.7"));
        assertEquals(new NbdUri(false, "10.0.0.7", 10809, null, ""), NbdUri.parse("nbd://10.0.0.7/"));
    }

    @Test
    void shouldTakeAnIpv6LiteralWithoutItsBrackets() {
        NbdUri u = NbdUri.parse("nbd://[::1]:7000/x");
        assertEquals("::1", u.host());
        assertEquals(7000, u.port());
        assertEquals("nbd://[::1]:7000/x", u.toString());
    }

    @Test
    void shouldTakeTheSocketPathAndExportFromAUnixUri() {
        NbdUri u = NbdUri.parse("nbd+unix:///vm%201?socket=/run/nbd/a%20b.sock");
        assertEquals(new NbdUri(false, null, 0, Path.of("/run/nbd/a b.sock"), "vm 1"), u);
        assertTrue(u.unix());
    }

    @Test
    void shouldKeepSlashesAndPlusSignsOfTheExportName() {
        assertEquals("a/b+c", NbdUri.parse("nbd://h/a/b+c").export());
        assertEquals("/a+b.sock", NbdUri.parse("nbd+unix:///?socket=/a+b.sock").socket().toString());
    }

    @Test
    void shouldAskForTlsWithTheNbdsSchemes() {
        assertTrue(NbdUri.parse("nbds://h/e").tls());
        assertTrue(NbdUri.parse("nbds+unix:///e?socket=/s").tls());
        assertTrue(NbdUri.parse("NBDS+TCP://h/e").tls());
        assertFalse(NbdUri.parse("nbd+tcp://h/e").tls());
        assertFalse(NbdUri.parse("nbd+unix:///e?socket=/s").tls());
    }

    @ParameterizedTest(name = "[{index}] {0}")
    @CsvSource(delimiter = '|', value = {
        "''                                 | empty",
        "localhost:10809                    | unknown scheme 'localhost'",
        "/tmp/nbd.sock                      | expected nbd://",
        "http://h/e                         | unknown scheme 'http'",
        "nbd://                             | missing host",
        "nbd:///export                      | missing host",
        "nbd://h:99999/e                    | port out of range",
        "nbd://h:/e                         | empty port",
        "nbd://h/e?socket=/s                | unknown query parameter 'socket' (a TCP URI takes none)",
        "nbd://user@h/e                     | user information",
        "nbd://h/e#frag                     | fragment",
        "nbd+unix:///e                      | missing ?socket=PATH",
        "nbd+unix:///e?socket=              | missing ?socket=PATH",
        "nbd+unix://host/e?socket=/s        | a Unix socket URI has no host",
        "nbd+unix:///e?socket=/a&socket=/b  | socket= given twice",
        "nbd+unix:///e?sock=/s              | unknown query parameter 'sock' (only socket=PATH)",
        "nbd://h/a b                        | Illegal character",
        "nbd://h/%zz                        | Malformed escape pair",
        "nbd://h/a%00b                      | contains NUL",
    })
    void shouldRefuseABadUriWithAOneLineReason(String text, String reason) {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> NbdUri.parse(text));
        assertTrue(e.getMessage().startsWith("bad NBD URI '" + text + "': "), e.getMessage());
        assertTrue(e.getMessage().contains(reason), e.getMessage());
        assertFalse(e.getMessage().contains("\n"), e.getMessage());
    }

    @Test
    void shouldRefuseAnExportNameLongerThan4096Bytes() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> NbdUri.parse("nbd://h/" + "x".repeat(4097)));
        assertTrue(e.getMessage().contains("longer than 4096 bytes"));
        assertEquals(4096, NbdUri.parse("nbd://h/" + "x".repeat(4096)).export().length());
    }

    @Test
    void shouldPrintBackAUriThatParsesToTheSame() {
        for (String s : new String[] {"nbd://h:1/e", "nbds://[fe80::1]:10809/", "nbd+unix:///e?socket=/s", "nbds+unix:///?socket=/x/y"}) {
            NbdUri u = NbdUri.parse(s);
            assertEquals(u, NbdUri.parse(u.toString()), s);
        }
    }
}
