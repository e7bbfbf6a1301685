package io.jvhost.perf;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** How {@code bench blk} starts SPDK's vhost target for {@code spdk-null}, and what it says when it cannot. */
class SpdkVhostTest {
    @TempDir
    Path dir;

    @Test
    void shouldConfigureANullBdevOfTheDisksSizeBehindOneControllerPolledOnTheBackendCpu() throws Exception {
        Path config = dir.resolve("spdk.json");
        SpdkVhost.writeNullConfig(config, "spdk-7", 256L << 20, 1);
        JsonNode subsystems = new ObjectMapper().readTree(config.toFile()).get("subsystems");
        JsonNode bdev = subsystems.get(0), vhost = subsystems.get(1);
        assertEquals("bdev", bdev.get("subsystem").asText());
        JsonNode nullBdev = bdev.get("config").get(0);
        assertEquals("bdev_null_create", nullBdev.get("method").asText());
        assertEquals((256L << 20) / 512, nullBdev.get("params").get("num_blocks").asLong());
        assertEquals(512, nullBdev.get("params").get("block_size").asInt());
        assertEquals("vhost_blk", vhost.get("subsystem").asText());
        JsonNode controller = vhost.get("config").get(0);
        assertEquals("vhost_create_blk_controller", controller.get("method").asText());
        assertEquals("spdk-7", controller.get("params").get("ctrlr").asText(), "the socket's name in the socket directory");
        assertEquals(nullBdev.get("params").get("name").asText(), controller.get("params").get("dev_name").asText());
        assertEquals("0x2", controller.get("params").get("cpumask").asText(), "CPU 1");
    }

    @Test
    void shouldPinTheWholeTargetAndItsOneReactorToTheBackendCpuOnHugepages() throws Exception {
        Path vhost = Files.createDirectories(dir.resolve("build/bin")).resolve("vhost");
        assertEquals(vhost, SpdkVhost.binary(dir), "an SPDK tree names its build/bin/vhost");
        assertEquals(vhost, SpdkVhost.binary(vhost), "the binary names itself");
        assertEquals(List.of("taskset", "-c", "1", vhost.toString(), "-S", "/tmp/s", "-m", "0x2", "-s", "256", "--json", "/tmp/c.json"),
                SpdkVhost.command(dir, Path.of("/tmp/s"), Path.of("/tmp/c.json"), 1));
        assertEquals("0x1", SpdkVhost.mask(0));
    }

    @Test
    void shouldSayWhereToGetSpdkWhenItIsNotGivenOrNotThere() {
        assertTrue(SpdkVhost.missing(null).getFirst().contains("--spdk PATH"), SpdkVhost.missing(null).toString());
        assertTrue(SpdkVhost.missing(null).getFirst().contains("scripts/build-spdk.sh"));
        String notThere = SpdkVhost.missing(dir).getFirst();
        assertTrue(notThere.contains(dir.resolve("build/bin/vhost") + " (not an executable file"), notThere);
    }
}
