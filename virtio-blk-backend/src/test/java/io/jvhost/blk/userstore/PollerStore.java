package io.jvhost.blk.userstore;

import io.jvhost.blk.BlockRequest;
import io.jvhost.blk.BlockStore;
import io.jvhost.core.sys.EventFd;
import io.jvhost.core.sys.Fd;
import io.jvhost.core.sys.FileCalls;
import io.jvhost.core.sys.LibC;
import io.jvhost.core.sys.NativeException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * A store that completes on the poller, written against the public API only: its "device" (a
 * thread standing in for a kernel or a library) does each request's copy, queues it as done and
 * signals the device queue's eventfd; the queue's {@link Queue#reap} (on the poller) completes it.
 * It remembers the threads requests were completed on. With {@code unwatchable}, each queue's
 * completion fd is one epoll cannot watch (a regular file) and nothing is signalled: only polling
 * finds the completions, which the device then holds back a few milliseconds so that the poller
 * has gone to sleep when they come.
 */
public final class PollerStore implements BlockStore {
    private final Arena arena = Arena.ofShared();
    private final MemorySegment disk;
    private final boolean unwatchable;
    private final LinkedBlockingQueue<Object[]> submitted = new LinkedBlockingQueue<>();
    private final List<Fd> fds = new CopyOnWriteArrayList<>();
    /** The threads requests were completed on, in order. */
    public final ConcurrentLinkedQueue<String> completedOn = new ConcurrentLinkedQueue<>();
    private final Thread device;

    public PollerStore(long bytes, boolean unwatchable) {
        this.disk = arena.allocate(bytes, 4096);
        this.unwatchable = unwatchable;
        this.device = Thread.ofPlatform().daemon(true).name("poller-store-device").start(this::run);
    }

    public MemorySegment contents() {
        return disk;
    }

    @Override
    public long size() {
        return disk.byteSize();
    }

    @Override
    public boolean canFlush() {
        return false;
    }

    /** Not used by the device, which submits through the queues. */
    @Override
    public void submit(BlockRequest[] requests, int count) {
        throw new UnsupportedOperationException("requests come through openQueue");
    }

    @Override
    public Queue openQueue(int index) {
        try {
            Fd fd = unwatchable
                    ? Fd.adopt((int) LibC.check(FileCalls.open("/proc/self/status", FileCalls.O_RDONLY | FileCalls.O_CLOEXEC), "open"))
                    : EventFd.create();
            fds.add(fd);
            return new DeviceQueue(fd);
        } catch (NativeException e) {
            throw new IllegalStateException(e);
        }
    }

    private final class DeviceQueue implements Queue {
        final Fd fd;
        final ConcurrentLinkedQueue<BlockRequest> done = new ConcurrentLinkedQueue<>();

        DeviceQueue(Fd fd) {
            this.fd = fd;
        }

        @Override
        public void submit(BlockRequest[] requests, int count) {
            for (int i = 0; i < count; i++) {
                submitted.add(new Object[] {requests[i], this});
            }
        }

        @Override
        public int completionFd() {
            return fd.get();
        }

        @Override
        public int reap(int budget) {
            int n = 0;
            for (BlockRequest r; n < budget && (r = done.poll()) != null; n++) {
                completedOn.add(Thread.currentThread().getName());
                r.complete(BlockRequest.STATUS_OK);
            }
            return n;
        }
    }

    private void run() {
        while (true) {
            Object[] next;
            try {
                next = submitted.poll(1, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                return;
            }
            if (next == null) {
                continue;
            }
            if (unwatchable) {
                try {
                    Thread.sleep(5);
                } catch (InterruptedException e) {
                    return;
                }
            }
            BlockRequest r = (BlockRequest) next[0];
            DeviceQueue q = (DeviceQueue) next[1];
            long at = r.offset();
            for (int s = 0; s < r.segmentCount(); s++) {
                long n = r.segmentLength(s);
                if (r.type() == BlockRequest.Type.READ) {
                    MemorySegment.copy(disk, at, r.segmentMemory(s), r.segmentOffset(s), n);
                } else if (r.type() == BlockRequest.Type.WRITE) {
                    MemorySegment.copy(r.segmentMemory(s), r.segmentOffset(s), disk, at, n);
                }
                at += n;
            }
            q.done.add(r);
            if (!unwatchable) {
                LibC.eventfdSignal(q.fd.get());
            }
        }
    }

    @Override
    public void close() {
        device.interrupt();
        try {
            device.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        for (Fd f : fds) {
            f.close();
        }
        arena.close();
    }
}
