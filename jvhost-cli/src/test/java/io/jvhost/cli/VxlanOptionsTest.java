package io.jvhost.cli;

import java.nio.file.Files;
import java.nio.file.Path;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code jvhost net --vxlan-*} refuses what cannot work in one line, before opening anything (loopback only). */
class VxlanOptionsTest {
    @Test
    void shouldRefuseAnMtuTheUnderlayCannotCarryNamingTheOverhead() throws Exception {
        Path dir = Files.createTempDirectory("jvhost-vxlan-options");
        // 127.0.0.2 routes over lo, MTU 65536: 65536 - 50 = 65486 fits, 65500 does not.
        CliProcess.Outcome o = CliProcess.run(dir, "net", "--socket", dir.resolve("n.sock").toString(),
                "--vxlan-remote", "127.0.0.2", "--vxlan-vni", "42", "--mtu", "65500");
        assertEquals(2, o.exit(), o.stderr());
        String line = o.line("jvhost net");
        assertTrue(line.contains("--mtu 65500 does not fit the VXLAN underlay: 65536 B MTU on lo less 50 B")
                && line.contains("leaves at most 65486"), line);
    }

    @Test
    void shouldAskForTheVniAndRefuseNamesAndMixedFamilies() throws Exception {
        Path dir = Files.createTempDirectory("jvhost-vxlan-options");
        String socket = dir.resolve("n.sock").toString();
        assertTrue(CliProcess.run(dir, "net", "--socket", socket, "--vxlan-remote", "127.0.0.2").line("jvhost net")
                .contains("needs --vxlan-vni"));
        assertTrue(CliProcess.run(dir, "net", "--socket", socket, "--vxlan-vni", "1", "--vxlan-remote", "localhost")
                .line("jvhost net").contains("is not an IPv4 or IPv6 address"));
        assertTrue(CliProcess.run(dir, "net", "--socket", socket, "--vxlan-vni", "1", "--vxlan-remote", "127.0.0.2",
                "--vxlan-remote", "::1").line("jvhost net").contains("mix of IPv4 and IPv6"));
        assertTrue(CliProcess.run(dir, "net", "--socket", socket, "--vxlan-vni", "1", "--vxlan-remote", "127.0.0.2",
                "--tap", "x").line("jvhost net").contains("does not combine with --tap"));
        assertTrue(CliProcess.run(dir, "net", "--socket", socket).line("jvhost net").contains("--vxlan-remote"),
                "the missing-mode error names the new option too");
    }
}
