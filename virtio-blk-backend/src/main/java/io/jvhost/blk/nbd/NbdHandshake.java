package io.jvhost.blk.nbd;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.handler.ssl.SslContext;
import io.netty.handler.ssl.SslHandler;
import io.netty.util.concurrent.Promise;
import io.netty.util.concurrent.ScheduledFuture;

import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

import static io.jvhost.blk.nbd.Nbd.*;

/**
 * The client side of the fixed newstyle handshake, on one fresh connection: greeting, client
 * flags, NBD_OPT_STARTTLS and the TLS handshake when asked for, then NBD_OPT_GO with the export
 * name and a request for block size constraints (NBD_OPT_EXPORT_NAME if the server is too old
 * for GO). Completes {@code result} with what the server said about the export and removes itself
 * from the pipeline, or fails it with an {@link NbdException} of one line and closes the channel.
 * Event loop thread; control path (allocates freely).
 */
final class NbdHandshake extends ChannelInboundHandlerAdapter {
    /** What the server told about the export; block sizes are 0 when it stated none. */
    record Export(long size, int flags, int minBlock, int preferredBlock, int maxPayload) {
        boolean has(int flag) {
            return (flags & flag) != 0;
        }

        /**
         * Longest READ or WRITE command: the server's maximum payload (32 MiB where it states none,
         * at most 1 GiB), in whole blocks of its minimum size (at least 512).
         */
        int chunk() {
            long max = maxPayload > 0 ? Math.min(maxPayload, 1 << 30) : DEFAULT_MAX_PAYLOAD;
            int align = Math.max(512, minBlock);
            return (int) Math.max(align, max / align * align);
        }
    }

    private enum Step { GREETING, STARTTLS, TLS, GO, EXPORT_NAME, DONE }

    private final String export;
    private final SslContext ssl;
    private final String tlsHost;
    private final int tlsPort;
    private final long timeoutMillis;
    private final Promise<Export> result;
    private ByteBuf in;
    private Step step = Step.GREETING;
    private boolean noZeroes;
    private long size = -1;
    private int flags;
    private int minBlock, preferredBlock, maxPayload;
    private ScheduledFuture<?> timer;
    private ChannelHandlerContext ctx;

    /**
     * @param ssl     TLS context, or null for a plain connection
     * @param tlsHost host name the server's certificate must carry, or null not to check it
     */
    NbdHandshake(String export, SslContext ssl, String tlsHost, int tlsPort, long timeoutMillis, Promise<Export> result) {
        this.export = export;
        this.ssl = ssl;
        this.tlsHost = tlsHost;
        this.tlsPort = tlsPort;
        this.timeoutMillis = timeoutMillis;
        this.result = result;
    }

    @Override
    public void handlerAdded(ChannelHandlerContext ctx) {
        this.ctx = ctx;
        this.in = ctx.alloc().heapBuffer(256);
        timer = ctx.executor().schedule(() -> fail("no NBD handshake from the server within " + timeoutMillis + " ms"),
                timeoutMillis, TimeUnit.MILLISECONDS);
    }

    @Override
    public void handlerRemoved(ChannelHandlerContext ctx) {
        if (timer != null) {
            timer.cancel(false);
        }
        if (in != null) {
            in.release();
            in = null;
        }
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
        ByteBuf b = (ByteBuf) msg;
        try {
            if (in != null) {
                in.writeBytes(b);
            }
        } finally {
            b.release();
        }
        try {
            while (in != null && step != Step.DONE && step != Step.TLS && advance()) {
                in.discardReadBytes();
            }
        } catch (RuntimeException e) {
            fail("malformed handshake from the server: " + e);
        }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
        fail(switch (step) {
            case GREETING -> "the server closed the connection before its greeting";
            case STARTTLS, TLS -> "the server closed the connection during the TLS handshake";
            case EXPORT_NAME -> "the server closed the connection: it has no export '" + export + "'";
            default -> "the server closed the connection during the handshake";
        });
        ctx.fireChannelInactive();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
        fail(describe(cause));
    }

    @Override
    public void userEventTriggered(ChannelHandlerContext ctx, Object evt) {
        if (evt instanceof io.netty.handler.ssl.SslHandshakeCompletionEvent e && !e.isSuccess()) {
            fail("TLS handshake failed: " + describe(e.cause()));
        }
        ctx.fireUserEventTriggered(evt);
    }

    /** Handles one complete message if buffered; false when more bytes are needed. */
    private boolean advance() {
        switch (step) {
            case GREETING -> {
                if (in.readableBytes() < 18) {
                    return false;
                }
                long magic = in.readLong();
                long second = in.readLong();
                int serverFlags = in.readUnsignedShort();
                if (magic != NBDMAGIC) {
                    return fail("not an NBD server (no NBDMAGIC greeting)");
                }
                if (second == OLDSTYLE_MAGIC) {
                    return fail("the server speaks the old-style NBD handshake, which is not supported");
                }
                if (second != IHAVEOPT || (serverFlags & FLAG_FIXED_NEWSTYLE) == 0) {
                    return fail("the server does not speak the fixed newstyle NBD handshake");
                }
                noZeroes = (serverFlags & FLAG_NO_ZEROES) != 0;
                ByteBuf out = ctx.alloc().buffer(4);
                out.writeInt(C_FLAG_FIXED_NEWSTYLE | (noZeroes ? C_FLAG_NO_ZEROES : 0));
                ctx.write(out);
                if (ssl != null) {
                    option(OPT_STARTTLS, ctx.alloc().buffer(0));
                    step = Step.STARTTLS;
                } else {
                    go();
                }
                return true;
            }
            case STARTTLS, GO -> {
                if (in.readableBytes() < 20) {
                    return false;
                }
                int length = in.getInt(in.readerIndex() + 16);
                if (length < 0 || length > 1 << 20) {
                    return fail("option reply of " + Integer.toUnsignedString(length) + " bytes");
                }
                if (in.readableBytes() < 20 + length) {
                    return false;
                }
                long magic = in.readLong();
                int option = in.readInt();
                int type = in.readInt();
                in.skipBytes(4);
                ByteBuf data = in.readSlice(length);
                if (magic != OPTION_REPLY_MAGIC) {
                    return fail("bad option reply magic 0x" + Long.toHexString(magic));
                }
                return step == Step.STARTTLS ? startTlsReply(option, type, data) : goReply(option, type, data);
            }
            case EXPORT_NAME -> {
                int need = 10 + (noZeroes ? 0 : 124);
                if (in.readableBytes() < need) {
                    return false;
                }
                size = in.readLong();
                flags = in.readUnsignedShort();
                in.skipBytes(need - 10);
                return done();
            }
            default -> {
                return false;
            }
        }
    }

    private boolean startTlsReply(int option, int type, ByteBuf data) {
        if (option != OPT_STARTTLS) {
            return fail("option reply for option " + option + " while waiting for STARTTLS");
        }
        if (type != REP_ACK) {
            return fail("the server refused TLS (" + optionError(type) + message(data) + ")");
        }
        if (in.isReadable()) {
            return fail("the server sent bytes before the TLS handshake");
        }
        step = Step.TLS;
        SslHandler tls = tlsHost != null ? ssl.newHandler(ctx.alloc(), tlsHost, tlsPort) : ssl.newHandler(ctx.alloc());
        tls.setHandshakeTimeoutMillis(timeoutMillis);
        ctx.pipeline().addBefore(ctx.name(), "tls", tls);
        tls.handshakeFuture().addListener(f -> {
            if (f.isSuccess()) {
                if (step == Step.TLS) {
                    go();
                    channelRead(ctx, ctx.alloc().buffer(0)); // anything already decrypted
                }
            } else {
                fail("TLS handshake failed: " + describe(f.cause()));
            }
        });
        return false;
    }

    private void go() {
        byte[] name = export.getBytes(StandardCharsets.UTF_8);
        ByteBuf data = ctx.alloc().buffer(4 + name.length + 4);
        data.writeInt(name.length).writeBytes(name);
        data.writeShort(1).writeShort(INFO_BLOCK_SIZE); // says we honour block size constraints
        option(OPT_GO, data);
        step = Step.GO;
    }

    private boolean goReply(int option, int type, ByteBuf data) {
        if (option != OPT_GO) {
            return fail("option reply for option " + option + " while waiting for NBD_OPT_GO");
        }
        switch (type) {
            case REP_INFO -> {
                if (data.readableBytes() < 2) {
                    return fail("empty NBD_REP_INFO");
                }
                int info = data.readUnsignedShort();
                if (info == INFO_EXPORT && data.readableBytes() >= 10) {
                    size = data.readLong();
                    flags = data.readUnsignedShort();
                } else if (info == INFO_BLOCK_SIZE && data.readableBytes() >= 12) {
                    minBlock = data.readInt();
                    preferredBlock = data.readInt();
                    maxPayload = data.readInt();
                }
                return true; // others (name, description) are of no use here
            }
            case REP_ACK -> {
                if (size < 0) {
                    return fail("the server accepted NBD_OPT_GO without telling the export's size");
                }
                return done();
            }
            case REP_ERR_UNSUP -> { // a server older than NBD_OPT_GO
                byte[] name = export.getBytes(StandardCharsets.UTF_8);
                option(OPT_EXPORT_NAME, ctx.alloc().buffer(name.length).writeBytes(name));
                step = Step.EXPORT_NAME;
                return true;
            }
            case REP_ERR_TLS_REQD -> {
                return fail("the server requires TLS: use an nbds:// or nbds+unix:// URI and --tls-dir" + message(data));
            }
            case REP_ERR_UNKNOWN -> {
                return fail("the server has no export '" + export + "'" + message(data));
            }
            default -> {
                if ((type & REP_FLAG_ERROR) != 0) {
                    return fail("the server refused export '" + export + "' (" + optionError(type) + message(data) + ")");
                }
                return true; // an unknown non-error reply: ignore, as the protocol asks
            }
        }
    }

    private boolean done() {
        step = Step.DONE;
        ctx.pipeline().remove(this);
        result.trySuccess(new Export(size, flags, minBlock, preferredBlock, maxPayload));
        return false;
    }

    private void option(int option, ByteBuf data) {
        ByteBuf out = ctx.alloc().buffer(16);
        out.writeLong(IHAVEOPT).writeInt(option).writeInt(data.readableBytes());
        ctx.write(out);
        ctx.writeAndFlush(data);
    }

    /** Fails the handshake (once) and closes the connection; returns false to stop parsing. */
    private boolean fail(String why) {
        if (result.tryFailure(new NbdException(why))) {
            step = Step.DONE;
            ctx.close();
        }
        return false;
    }

    private static String message(ByteBuf data) {
        String m = data.toString(StandardCharsets.UTF_8).strip();
        return m.isEmpty() ? "" : ": " + m.replace('\n', ' ');
    }

    /** A throwable as one line without class names where its message says enough. */
    static String describe(Throwable t) {
        Throwable root = t;
        while (root.getCause() != null && root.getCause() != root
                && (root.getMessage() == null || root instanceof io.netty.handler.codec.DecoderException)) {
            root = root.getCause();
        }
        String m = root.getMessage();
        if (m == null || m.isBlank()) {
            return root.getClass().getSimpleName();
        }
        // JDK messages embed their causes as "java.security.cert.FooException: text": keep the text.
        return CLASS_PREFIX.matcher(m.replace('\n', ' ')).replaceAll("");
    }

    private static final java.util.regex.Pattern CLASS_PREFIX =
            java.util.regex.Pattern.compile("\\b(?:[a-z][a-z0-9_]*\\.)+[A-Z]\\w*(?:Exception|Error):\\s*");
}
