package io.jvhost.blk.nbd;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** Numbers of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md), and its request header, written out once. */
final class Nbd {
    private Nbd() {}

    static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfShort BE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfLong BE_LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    // Handshake
    static final long NBDMAGIC = 0x4e42444d41474943L;
    static final long IHAVEOPT = 0x49484156454F5054L;
    static final long OLDSTYLE_MAGIC = 0x00420281861253L;
    static final long OPTION_REPLY_MAGIC = 0x0003e889045565a9L;
    static final int FLAG_FIXED_NEWSTYLE = 1, FLAG_NO_ZEROES = 1 << 1;
    static final int C_FLAG_FIXED_NEWSTYLE = 1, C_FLAG_NO_ZEROES = 1 << 1;

    // Options
    static final int OPT_EXPORT_NAME = 1, OPT_ABORT = 2, OPT_STARTTLS = 5, OPT_GO = 7;
    static final int REP_ACK = 1, REP_INFO = 3;
    static final int REP_FLAG_ERROR = 1 << 31;
    static final int REP_ERR_UNSUP = REP_FLAG_ERROR | 1, REP_ERR_POLICY = REP_FLAG_ERROR | 2,
            REP_ERR_INVALID = REP_FLAG_ERROR | 3, REP_ERR_PLATFORM = REP_FLAG_ERROR | 4,
            REP_ERR_TLS_REQD = REP_FLAG_ERROR | 5, REP_ERR_UNKNOWN = REP_FLAG_ERROR | 6,
            REP_ERR_SHUTDOWN = REP_FLAG_ERROR | 7, REP_ERR_BLOCK_SIZE_REQD = REP_FLAG_ERROR | 8,
            REP_ERR_TOO_BIG = REP_FLAG_ERROR | 9;
    static final int INFO_EXPORT = 0, INFO_BLOCK_SIZE = 3;

    // Transmission flags
    static final int FLAG_HAS_FLAGS = 1, FLAG_READ_ONLY = 1 << 1, FLAG_SEND_FLUSH = 1 << 2,
            FLAG_SEND_FUA = 1 << 3, FLAG_SEND_TRIM = 1 << 5, FLAG_SEND_WRITE_ZEROES = 1 << 6,
            FLAG_CAN_MULTI_CONN = 1 << 8;

    // Transmission
    static final int REQUEST_MAGIC = 0x25609513, SIMPLE_REPLY_MAGIC = 0x67446698, STRUCTURED_REPLY_MAGIC = 0x668e33ef;
    static final int REQUEST_HEADER = 28, REPLY_HEADER = 16;
    static final int CMD_READ = 0, CMD_WRITE = 1, CMD_DISC = 2, CMD_FLUSH = 3, CMD_TRIM = 4, CMD_WRITE_ZEROES = 6;
    static final int CMD_FLAG_FUA = 1, CMD_FLAG_NO_HOLE = 1 << 1;
    static final int EPERM = 1, EIO = 5, ENOMEM = 12, EINVAL = 22, ENOSPC = 28, EOVERFLOW = 75, ENOTSUP = 95,
            ESHUTDOWN = 108;
    /** Largest payload when the server states none (proto.md: servers SHOULD take 32 MiB). */
    static final int DEFAULT_MAX_PAYLOAD = 32 << 20;

    /** Writes a request header ({@link #REQUEST_HEADER} bytes, big-endian) to {@code m} at {@code at}. */
    static void writeRequest(MemorySegment m, long at, int flags, int command, long cookie, long offset, int length) {
        m.set(BE_INT, at, REQUEST_MAGIC);
        m.set(BE_SHORT, at + 4, (short) flags);
        m.set(BE_SHORT, at + 6, (short) command);
        m.set(BE_LONG, at + 8, cookie);
        m.set(BE_LONG, at + 16, offset);
        m.set(BE_INT, at + 24, length);
    }

    static String optionError(int type) {
        return switch (type) {
            case REP_ERR_UNSUP -> "NBD_REP_ERR_UNSUP";
            case REP_ERR_POLICY -> "NBD_REP_ERR_POLICY";
            case REP_ERR_INVALID -> "NBD_REP_ERR_INVALID";
            case REP_ERR_PLATFORM -> "NBD_REP_ERR_PLATFORM";
            case REP_ERR_TLS_REQD -> "NBD_REP_ERR_TLS_REQD";
            case REP_ERR_UNKNOWN -> "NBD_REP_ERR_UNKNOWN";
            case REP_ERR_SHUTDOWN -> "NBD_REP_ERR_SHUTDOWN";
            case REP_ERR_BLOCK_SIZE_REQD -> "NBD_REP_ERR_BLOCK_SIZE_REQD";
            case REP_ERR_TOO_BIG -> "NBD_REP_ERR_TOO_BIG";
            default -> "error 0x" + Integer.toHexString(type);
        };
    }

    static String commandName(int command) {
        return switch (command) {
            case CMD_READ -> "READ";
            case CMD_WRITE -> "WRITE";
            case CMD_FLUSH -> "FLUSH";
            case CMD_TRIM -> "TRIM";
            case CMD_WRITE_ZEROES -> "WRITE_ZEROES";
            default -> "command " + command;
        };
    }

    static String errno(int e) {
        return switch (e) {
            case EPERM -> "EPERM";
            case EIO -> "EIO";
            case ENOMEM -> "ENOMEM";
            case EINVAL -> "EINVAL";
            case ENOSPC -> "ENOSPC";
            case EOVERFLOW -> "EOVERFLOW";
            case ENOTSUP -> "ENOTSUP";
            case ESHUTDOWN -> "ESHUTDOWN";
            default -> "error " + e;
        };
    }
}
