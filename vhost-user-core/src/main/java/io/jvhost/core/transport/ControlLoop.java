package io.jvhost.core.transport;

import io.netty.channel.IoEventLoop;
import io.netty.channel.IoHandle;
import io.netty.channel.IoRegistration;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.epoll.EpollIoHandler;

import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * The control thread: one Netty 4.2 epoll event loop that watches every vhost-user socket and runs
 * all protocol handling, poller acknowledgements and reconnect timers. One per process is plenty.
 */
public final class ControlLoop implements Executor, AutoCloseable {
    private final MultiThreadIoEventLoopGroup group;
    private final IoEventLoop loop;

    public ControlLoop() {
        this.group = new MultiThreadIoEventLoopGroup(1,
                (java.util.concurrent.ThreadFactory) r -> Thread.ofPlatform().name("jvhost-control").daemon(false).unstarted(r),
                EpollIoHandler.newFactory());
        this.loop = group.next();
    }

    @Override
    public void execute(Runnable task) {
        loop.execute(task);
    }

    public boolean inLoop() {
        return loop.inEventLoop();
    }

    public void schedule(Runnable task, long delayMillis) {
        loop.schedule(task, delayMillis, TimeUnit.MILLISECONDS);
    }

    /** Registers {@code handle} for readiness events; {@code registered} runs on the loop. */
    void register(IoHandle handle, Consumer<IoRegistration> registered, Consumer<Throwable> failed) {
        loop.execute(() -> loop.register(handle).addListener(f -> {
            if (f.isSuccess()) {
                registered.accept((IoRegistration) f.getNow());
            } else {
                failed.accept(f.cause());
            }
        }));
    }

    @Override
    public void close() {
        group.shutdownGracefully(0, 2, TimeUnit.SECONDS).syncUninterruptibly();
    }
}
