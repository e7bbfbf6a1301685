package io.jvhost.cli;

import io.jvhost.core.device.VirtioFeatures;
import io.jvhost.testkit.frontend.Frontend;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code jvhost blk --null SIZE} serves a disk of SIZE with nothing behind it: a terabyte costs no
 * memory, and the null store's flush shows in the offered features (a RAM disk offers none).
 */
@Timeout(value = 2, unit = TimeUnit.MINUTES)
class NullDiskCommandTest {
    @TempDir
    Path dir;

    @Test
    void shouldServeANullDiskOfTheGivenSizeWithFlushOffered() throws Exception {
        Path socket = dir.resolve("null.sock");
        try (CliProcess p = CliProcess.start(dir, List.of(), Map.of(), "blk", "--socket", socket.toString(), "--null", "1T")) {
            p.await(CliProcess.READY, Duration.ofSeconds(60));
            try (Frontend fe = Frontend.connect(socket, 10_000)) {
                long offered = fe.handshakeLikeQemu(1);
                assertTrue((offered & VirtioFeatures.bit(VirtioFeatures.BLK_FLUSH)) != 0, "FLUSH offered");
                assertEquals(0, offered & VirtioFeatures.bit(VirtioFeatures.BLK_RO), "not read-only");
                long sectors = ByteBuffer.wrap(fe.getConfig(0, 8)).order(ByteOrder.LITTLE_ENDIAN).getLong();
                assertEquals((1L << 40) / 512, sectors, "capacity in sectors");
            }
            assertEquals(0, p.terminate());
        }
    }
}
