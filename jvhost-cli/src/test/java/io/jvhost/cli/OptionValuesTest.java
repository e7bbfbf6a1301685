package io.jvhost.cli;

import io.jvhost.cli.options.QueueMap;

import java.io.PrintWriter;
import java.io.StringWriter;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import picocli.CommandLine;
import picocli.CommandLine.ParseResult;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Sizes ({@code --ram}) and queue maps ({@code --queue-map}) are parsed by picocli converters: a
 * good value arrives as a number or a map, a bad one is refused before anything starts, with
 * picocli's one-line {@code Invalid value for option ...} and exit code 2.
 */
class OptionValuesTest {

    private static ParseResult parseBlk(String... options) {
        String[] args = new String[options.length + 3];
        args[0] = "blk";
        args[1] = "--socket";
        args[2] = "/tmp/never-used.sock";
        System.arraycopy(options, 0, args, 3, options.length);
        return new CommandLine(new Main()).parseArgs(args).subcommand();
    }

    @ParameterizedTest
    @CsvSource({"4096, 4096", "64M, 67108864", "1G, 1073741824", "1g, 1073741824", "2k, 2048", "1T, 1099511627776"})
    void shouldTakeARamSizeWithOrWithoutASuffixWhenItIsWholeSectors(String given, long bytes) {
        assertEquals(bytes, parseBlk("--ram", given).<Long>matchedOptionValue("--ram", 0L));
    }

    @Test
    void shouldGiveEachPollerItsQueuesWhenTheQueueMapIsWellFormed() {
        QueueMap map = parseBlk("--ram", "1M", "--queue-map", "0,1:2, 3").matchedOptionValue("--queue-map", null);
        assertArrayEquals(new int[][] {{0, 1}, {2, 3}}, map.pollers());
    }

    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
        "--ram|1Q|Invalid value for option '--ram': '1Q' is not a size",
        "--ram|0|Invalid value for option '--ram': '0' is not a positive multiple of 512 bytes",
        "--ram|1000|Invalid value for option '--ram': '1000' is not a positive multiple of 512 bytes",
        "--ram|-1G|Invalid value for option '--ram': '-1G' is not a size",
        "--ram|G|Invalid value for option '--ram': 'G' is not a size",
        "--ram|99999999999T|Invalid value for option '--ram': '99999999999T' is too large",
        "--queue-map|0,,1|Invalid value for option '--queue-map': '0,,1': '' is not a queue index",
        "--queue-map|0:|Invalid value for option '--queue-map': '0:': '' is not a queue index",
        "--queue-map|a,b|Invalid value for option '--queue-map': 'a,b': 'a' is not a queue index",
        "--queue-map|0,1:1|Invalid value for option '--queue-map': '0,1:1': queue 1 is mapped twice",
    })
    void shouldRefuseABadValueWithOneLineAndExitCodeTwoBeforeServing(String option, String value, String message) {
        StringWriter err = new StringWriter();
        CommandLine cli = new CommandLine(new Main());
        cli.setErr(new PrintWriter(err, true));
        String[] args = option.equals("--ram") ? new String[] {"blk", "--socket", "/tmp/never-used.sock", option, value}
                : new String[] {"blk", "--socket", "/tmp/never-used.sock", "--ram", "1M", option, value};

        int code = cli.execute(args);

        assertEquals(2, code, err.toString());
        String first = err.toString().lines().findFirst().orElse("");
        assertEquals(true, first.startsWith(message), first);
    }
}
