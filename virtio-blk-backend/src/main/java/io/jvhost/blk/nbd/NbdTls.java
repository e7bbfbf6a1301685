package io.jvhost.blk.nbd;

import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslContextBuilder;
import io.netty.handler.ssl.SslProvider;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Base64;
import java.util.Collection;

/**
 * TLS client credentials from a directory laid out as QEMU's {@code tls-creds-x509} object wants
 * it: {@code ca-cert.pem} (the CA that signed the server's certificate, required), and
 * {@code client-cert.pem} with {@code client-key.pem} (needed when the server verifies its peers,
 * as {@code qemu-nbd} does by default). Keys may be PKCS#8 ({@code BEGIN PRIVATE KEY}, what
 * openssl writes) or PKCS#1 RSA ({@code BEGIN RSA PRIVATE KEY}, what certtool writes).
 */
public final class NbdTls {
    public static final String CA_CERT = "ca-cert.pem", CLIENT_CERT = "client-cert.pem", CLIENT_KEY = "client-key.pem";

    private NbdTls() {}

    /**
     * A client context; {@code checkHostname} makes the server's certificate name the host connected
     * to (TCP; for a Unix socket there is no host name to check, only the CA's signature).
     */
    public static SslContext clientContext(Path dir, boolean checkHostname) throws NbdException {
        if (!Files.isDirectory(dir)) {
            throw new NbdException("TLS directory " + dir + " does not exist");
        }
        Path ca = dir.resolve(CA_CERT), cert = dir.resolve(CLIENT_CERT), key = dir.resolve(CLIENT_KEY);
        if (!Files.isRegularFile(ca)) {
            throw new NbdException("TLS directory " + dir + " has no " + CA_CERT);
        }
        if (Files.isRegularFile(cert) != Files.isRegularFile(key)) {
            throw new NbdException("TLS directory " + dir + " has only one of " + CLIENT_CERT + " and " + CLIENT_KEY);
        }
        try {
            SslContextBuilder b = SslContextBuilder.forClient().sslProvider(SslProvider.JDK)
                    .trustManager(certificates(ca))
                    .endpointIdentificationAlgorithm(checkHostname ? "HTTPS" : null);
            if (Files.isRegularFile(cert)) {
                b.keyManager(privateKey(key), certificates(cert));
            }
            return b.build();
        } catch (IOException | GeneralSecurityException | IllegalArgumentException e) {
            throw new NbdException("cannot load TLS credentials from " + dir + ": " + NbdHandshake.describe(e), e);
        }
    }

    private static X509Certificate[] certificates(Path file) throws IOException, GeneralSecurityException {
        try (InputStream s = Files.newInputStream(file)) {
            Collection<? extends java.security.cert.Certificate> all = CertificateFactory.getInstance("X.509").generateCertificates(s);
            if (all.isEmpty()) {
                throw new GeneralSecurityException(file.getFileName() + " holds no certificate");
            }
            return all.toArray(new X509Certificate[0]);
        }
    }

    static PrivateKey privateKey(Path file) throws IOException, GeneralSecurityException {
        String pem = Files.readString(file);
        byte[] der;
        if (pem.contains("-----BEGIN PRIVATE KEY-----")) {
            der = block(pem, "PRIVATE KEY");
        } else if (pem.contains("-----BEGIN RSA PRIVATE KEY-----")) {
            der = pkcs1ToPkcs8(block(pem, "RSA PRIVATE KEY"));
        } else {
            throw new GeneralSecurityException(file.getFileName()
                    + ": expected an unencrypted PKCS#8 or PKCS#1 RSA key (convert with: openssl pkcs8 -topk8 -nocrypt)");
        }
        for (String algorithm : new String[] {"RSA", "EC", "Ed25519", "Ed448", "RSASSA-PSS"}) {
            try {
                return KeyFactory.getInstance(algorithm).generatePrivate(new PKCS8EncodedKeySpec(der));
            } catch (GeneralSecurityException e) {
                // try the next
            }
        }
        throw new GeneralSecurityException(file.getFileName() + ": not an RSA, EC or EdDSA key");
    }

    private static byte[] block(String pem, String label) throws GeneralSecurityException {
        String begin = "-----BEGIN " + label + "-----", end = "-----END " + label + "-----";
        int from = pem.indexOf(begin), to = pem.indexOf(end);
        if (from < 0 || to < from) {
            throw new GeneralSecurityException("no " + label + " block");
        }
        return Base64.getMimeDecoder().decode(pem.substring(from + begin.length(), to));
    }

    /** Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo (RFC 5208), which the JDK reads. */
    static byte[] pkcs1ToPkcs8(byte[] pkcs1) {
        byte[] algorithm = {0x30, 0x0d, 0x06, 0x09, 0x2a, (byte) 0x86, 0x48, (byte) 0x86, (byte) 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
        ByteArrayOutputStream body = new ByteArrayOutputStream();
        body.writeBytes(new byte[] {0x02, 0x01, 0x00}); // version 0
        body.writeBytes(algorithm);
        body.write(0x04);
        writeLength(body, pkcs1.length);
        body.writeBytes(pkcs1);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(0x30);
        writeLength(out, body.size());
        out.writeBytes(body.toByteArray());
        return out.toByteArray();
    }

    private static void writeLength(ByteArrayOutputStream out, int n) {
        if (n < 0x80) {
            out.write(n);
        } else if (n < 0x100) {
            out.write(0x81);
            out.write(n);
        } else if (n < 0x10000) {
            out.write(0x82);
            out.write(n >> 8);
            out.write(n);
        } else {
            out.write(0x83);
            out.write(n >> 16);
            out.write(n >> 8);
            out.write(n);
        }
    }
}
