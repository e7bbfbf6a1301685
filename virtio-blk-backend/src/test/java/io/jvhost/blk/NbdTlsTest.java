package io.jvhost.blk;

import io.jvhost.blk.nbd.NbdException;
import io.jvhost.blk.nbd.NbdStore;
import io.jvhost.blk.nbd.NbdUri;
import io.jvhost.testkit.NbdServer;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static io.jvhost.blk.BlkRig.pattern;
import static io.jvhost.blk.NbdStoreTest.MIB;
import static io.jvhost.blk.NbdStoreTest.fileBytes;
import static io.jvhost.blk.NbdStoreTest.image;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * TLS against {@code qemu-nbd --tls-creds} (QEMU's tls-creds-x509, which by default also checks the
 * client's certificate), with credentials openssl made for the test.
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class NbdTlsTest {
    @TempDir
    static Path shared;
    static Path creds, pkcs1Creds, strangerCreds;

    @TempDir
    Path dir;

    @BeforeAll
    static void credentials() throws Exception {
        NbdServer.require();
        creds = NbdServer.tlsCredentials(shared.resolve("creds"), false);
        pkcs1Creds = NbdServer.tlsCredentials(shared.resolve("pkcs1"), true);
        strangerCreds = NbdServer.tlsCredentials(shared.resolve("stranger"), false);
    }

    static String[] tlsArgs(Path creds) {
        return new String[] {"--object", "tls-creds-x509,id=tls0,dir=" + creds + ",endpoint=server", "--tls-creds=tls0"};
    }

    private void roundTrip(String uri, Path clientCreds, Path image) throws Exception {
        NbdStore store = NbdStore.open(NbdStore.Options.of(NbdUri.parse(uri), clientCreds));
        try (BlkRig rig = BlkRig.serve(store, 1).start()) {
            byte[] data = pattern(128 << 10, 5);
            rig.write(0, 40, data);
            assertArrayEquals(data, rig.read(0, 40, data.length));
            assertArrayEquals(data, fileBytes(image, 40 * 512, data.length), "the image behind the TLS export");
        }
    }

    @Test
    void shouldServeOverTlsOnTcpCheckingTheServersNameWithAPkcs1ClientKey() throws Exception {
        Path image = image(dir, "disk.img", 4 * MIB);
        try (NbdServer server = NbdServer.qemuNbdTcp(image, 0, "secure", tlsArgs(pkcs1Creds))) {
            roundTrip("nbds://127.0.0.1:" + server.port() + "/secure", pkcs1Creds, image);
        }
    }

    @Test
    void shouldServeOverTlsOnAUnixSocket() throws Exception {
        Path image = image(dir, "disk.img", 4 * MIB);
        try (NbdServer server = NbdServer.qemuNbdUnix(image, dir.resolve("nbd.sock"), "secure", tlsArgs(creds))) {
            roundTrip("nbds+unix:///secure?socket=" + server.socket(), creds, image);
        }
    }

    @Test
    void shouldTellToUseTlsWhenTheServerRequiresIt() throws Exception {
        Path image = image(dir, "disk.img", 4 * MIB);
        try (NbdServer server = NbdServer.qemuNbdUnix(image, dir.resolve("nbd.sock"), "secure", tlsArgs(creds))) {
            NbdException e = assertThrows(NbdException.class, () -> NbdStore.open(NbdStore.Options.of(
                    NbdUri.parse("nbd+unix:///secure?socket=" + server.socket()), null)));
            assertTrue(e.getMessage().contains("requires TLS"), e.getMessage());
        }
    }

    @Test
    void shouldFailTheHandshakeWithAServerSignedByAnotherCa() throws Exception {
        Path image = image(dir, "disk.img", 4 * MIB);
        try (NbdServer server = NbdServer.qemuNbdTcp(image, 0, "secure", tlsArgs(strangerCreds))) {
            NbdException e = assertThrows(NbdException.class, () -> NbdStore.open(NbdStore.Options.of(
                    NbdUri.parse("nbds://127.0.0.1:" + server.port() + "/secure"), creds)));
            assertTrue(e.getMessage().contains("TLS handshake failed"), e.getMessage());
            assertFalse(e.getMessage().contains("\n"), e.getMessage());
        }
    }

    @Test
    void shouldRefuseTlsWithoutCredentialsAndCredentialsWithoutTls() {
        NbdException noDir = assertThrows(NbdException.class, () -> NbdStore.open(NbdStore.Options.of(
                NbdUri.parse("nbds://127.0.0.1/x"), null)));
        assertTrue(noDir.getMessage().contains("--tls-dir"), noDir.getMessage());
        NbdException plain = assertThrows(NbdException.class, () -> NbdStore.open(NbdStore.Options.of(
                NbdUri.parse("nbd://127.0.0.1/x"), creds)));
        assertTrue(plain.getMessage().contains("not a TLS URI"), plain.getMessage());
        NbdException missing = assertThrows(NbdException.class, () -> NbdStore.open(NbdStore.Options.of(
                NbdUri.parse("nbds://127.0.0.1/x"), shared.resolve("nowhere"))));
        assertTrue(missing.getMessage().contains("does not exist"), missing.getMessage());
    }
}
