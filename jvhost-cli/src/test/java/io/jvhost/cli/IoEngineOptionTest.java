package io.jvhost.cli;

import io.jvhost.blk.FileStore.IoEngine;

import java.io.PrintWriter;
import java.io.StringWriter;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import picocli.CommandLine;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** {@code jvhost blk --io-engine uring|inline|threads|auto}: parsed before anything starts, a bad name refused in one line. */
class IoEngineOptionTest {

    private static CommandLine.ParseResult parseBlk(String... options) {
        String[] args = new String[options.length + 5];
        args[0] = "blk";
        args[1] = "--socket";
        args[2] = "/tmp/never-used.sock";
        args[3] = "--file";
        args[4] = "/tmp/never-used.img";
        System.arraycopy(options, 0, args, 5, options.length);
        return new CommandLine(new Main()).parseArgs(args).subcommand();
    }

    @ParameterizedTest
    @CsvSource({"uring, URING", "io_uring, URING", "threads, THREADS", "inline, INLINE", "Auto, AUTO"})
    void shouldTakeTheIoEngineByName(String given, IoEngine engine) {
        assertEquals(engine, parseBlk("--io-engine", given).<IoEngine>matchedOptionValue("--io-engine", null));
    }

    @Test
    void shouldLeaveTheEngineToTheSystemPropertyOrAutoWhenNotGiven() {
        assertNull(parseBlk().<IoEngine>matchedOptionValue("--io-engine", null));
    }

    @Test
    void shouldRefuseAnUnknownEngineWithOneLineAndExitCodeTwo() {
        StringWriter err = new StringWriter();
        CommandLine cli = new CommandLine(new Main());
        cli.setErr(new PrintWriter(err, true));

        int code = cli.execute("blk", "--socket", "/tmp/never-used.sock", "--file", "/tmp/never-used.img", "--io-engine", "aio");

        assertEquals(2, code, err.toString());
        String first = err.toString().lines().findFirst().orElse("");
        assertTrue(first.startsWith("Invalid value for option '--io-engine': unknown I/O engine 'aio': auto, uring, inline or threads"), first);
    }
}
