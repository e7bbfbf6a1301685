package io.jvhost.cli;

import io.jvhost.core.sys.NativeException;
import io.jvhost.core.transport.SocketInUseException;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;

import picocli.CommandLine;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.UnmatchedArgumentException;

/**
 * How the CLI reports what stops it: one line on stderr, {@code jvhost CMD: MESSAGE}, and no stack
 * trace unless {@code --debug} was given. A bad option or value (a usage error) adds a pointer to
 * the command's help and exits 2; a problem of the machine (files, sockets, permissions) exits 1.
 */
public final class Errors {
    private static volatile boolean debug;

    private Errors() {}

    /** Installs both handlers on {@code cli} and every subcommand it has now. */
    static CommandLine install(CommandLine cli) {
        cli.setParameterExceptionHandler(Errors::usage);
        cli.setExecutionExceptionHandler(Errors::failure);
        return cli;
    }

    /** {@code --debug}: print the stack trace of an error after its line. */
    static void debug(boolean on) {
        debug = on;
    }

    /** The command's name as a user types it, e.g. {@code jvhost bench net}. */
    static String name(CommandLine cmd) {
        return cmd.getCommandSpec().qualifiedName();
    }

    /** A usage error: one line with the command's help pointer; exit code 2. */
    static int usage(ParameterException ex, String[] args) {
        CommandLine cmd = ex.getCommandLine();
        PrintWriter err = cmd.getErr();
        String message = oneLine(ex.getMessage());
        if (message.startsWith("Error: ")) {
            message = message.substring("Error: ".length());
        }
        if (ex instanceof UnmatchedArgumentException unmatched) {
            if (message.startsWith("Unmatched argument") && !cmd.getSubcommands().isEmpty()
                    && !unmatched.getUnmatched().isEmpty() && !unmatched.getUnmatched().get(0).startsWith("-")) {
                message = "unknown command '" + unmatched.getUnmatched().get(0) + "'";
            }
            List<String> suggestions = unmatched.getSuggestions();
            if (!suggestions.isEmpty()) {
                message += "; did you mean " + String.join(" or ", suggestions.subList(0, Math.min(3, suggestions.size()))) + "?";
            }
        }
        err.println(name(cmd) + ": " + message + " (see ./" + name(cmd) + " --help)");
        if (debug) {
            ex.printStackTrace(err);
        }
        err.flush();
        return cmd.getCommandSpec().exitCodeOnInvalidInput();
    }

    /** A failure while running: one line saying what went wrong; exit code 1. */
    static int failure(Exception ex, CommandLine cmd, ParseResult parsed) {
        PrintWriter err = cmd.getErr();
        err.println(name(cmd) + ": " + describe(ex));
        if (debug) {
            ex.printStackTrace(err);
        }
        err.flush();
        return cmd.getCommandSpec().exitCodeOnExecutionException();
    }

    /** What went wrong, on one line, for someone who does not read Java. */
    public static String describe(Throwable t) {
        while ((t instanceof CompletionException || t instanceof ExecutionException
                || t instanceof UncheckedIOException) && t.getCause() != null) {
            t = t.getCause();
        }
        if (t instanceof Failure f) {
            return oneLine(f.getMessage());
        }
        if (t instanceof SocketInUseException s) {
            return oneLine(s.getMessage()) + "; stop that one or choose another --socket";
        }
        if (t instanceof NativeException || t instanceof IOException) {
            return oneLine(t.getMessage() != null ? t.getMessage() : t.getClass().getSimpleName());
        }
        // Not one the CLI expects: say what it says, and where to look.
        String message = t.getMessage() != null ? t.getMessage() : t.getClass().getSimpleName();
        return oneLine(message) + " (--debug shows where)";
    }

    private static String oneLine(String message) {
        return message == null ? "" : message.strip().replaceAll("\\s*\\R\\s*", "; ");
    }
}
