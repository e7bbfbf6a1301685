package io.jvhost.blk.nbd;

import io.jvhost.blk.BlockRequest;

import java.util.Arrays;
import java.util.concurrent.CompletableFuture;

import org.slf4j.Logger;

import static io.jvhost.blk.nbd.NbdOp.FREE;
import static io.jvhost.blk.nbd.NbdOp.SENT;
import static io.jvhost.blk.nbd.NbdOp.WAITING;
import static io.jvhost.blk.nbd.Nbd.*;

/**
 * The commands and jobs of one owner of NBD connections (the store's Netty loop, or one
 * {@link NbdQueue}'s poller), written once for both: the pools, a request split into commands,
 * the FIFO of commands waiting to go out, a reply's cookie back to its command, a request completed
 * once all its commands are, and every request failed when the server is gone. The owner only
 * moves commands to and from the wire. A final class with direct calls, so the data path has no
 * virtual call per command; nothing is allocated once the pools have grown to the queue depth.
 * The owner's thread only, except {@link #failedOnTimeout}.
 */
final class NbdOps {
    /** Longest TRIM / WRITE_ZEROES command (the length field has 32 bits; devices send at most 1 GiB). */
    static final long MAX_RANGE_COMMAND = 1L << 30;

    private final Logger log;
    private final String who;
    private NbdOp[] ops = new NbdOp[0];
    private int[] freeOps = new int[0];
    private int freeOpCount;
    private int live;
    /** As long as every job ever made, so a finished one always has room to go back. */
    private NbdJob[] freeJobs = new NbdJob[0];
    private int freeJobCount;
    /** Commands waiting to go out, oldest first (a ring of op indices as long as {@link #ops}). */
    private int[] fifo = new int[0];
    private int fifoHead, fifoCount;
    private long ioErrors;
    /** Requests failed because the server stayed away past the timeout (the owner writes, anyone reads). */
    volatile long failedOnTimeout;

    /** {@code log} and {@code who} name the owner in the lines about failed commands. */
    NbdOps(Logger log, String who, int initial) {
        this.log = log;
        this.who = who;
        growOps(initial);
        growJobs(initial);
    }

    /** Commands taken from the pool and not yet done. */
    int live() {
        return live;
    }

    /** A job for a request (or the store's own final flush), from the pool. */
    NbdJob takeJob() {
        if (freeJobCount == 0) {
            growJobs(Math.max(16, freeJobs.length));
        }
        return freeJobs[--freeJobCount];
    }

    /**
     * Turns {@code r} into commands for an export with transmission flags {@code exportFlags}, at
     * the end of the FIFO: a READ or WRITE in pieces of at most {@code chunk} bytes, a durable
     * write with FUA (or a FLUSH after it, where the server has no FUA), each discard or
     * write-zeroes range in pieces of {@link #MAX_RANGE_COMMAND}. A request that needs no command
     * completes at once. Called only while the owner takes requests (open, not failing).
     */
    void start(BlockRequest r, int exportFlags, int chunk) {
        NbdJob j = takeJob();
        j.request = r;
        switch (r.type()) {
            case READ, WRITE -> {
                if (chunk <= 0) { // no export adopted yet: a request must never split into endless nothing
                    j.status = BlockRequest.STATUS_IOERR;
                    break;
                }
                boolean write = r.type() == BlockRequest.Type.WRITE;
                int flags = 0;
                if (write && r.durable()) {
                    if ((exportFlags & FLAG_SEND_FUA) != 0) {
                        flags = CMD_FLAG_FUA;
                    } else if ((exportFlags & FLAG_SEND_FLUSH) != 0) {
                        j.flushAfter = true;
                    }
                }
                long length = r.length();
                for (long at = 0; at < length; at += chunk) {
                    add(j, write ? CMD_WRITE : CMD_READ, flags, r.offset() + at, (int) Math.min(chunk, length - at), at);
                }
            }
            case FLUSH -> {
                if ((exportFlags & FLAG_SEND_FLUSH) != 0) {
                    add(j, CMD_FLUSH, 0, 0, 0, 0);
                }
            }
            case DISCARD, WRITE_ZEROES -> {
                boolean zero = r.type() == BlockRequest.Type.WRITE_ZEROES;
                if ((exportFlags & (zero ? FLAG_SEND_WRITE_ZEROES : FLAG_SEND_TRIM)) == 0) {
                    // Discard is advisory; write-zeroes the device offered only while the server could.
                    j.status = zero ? BlockRequest.STATUS_UNSUPP : BlockRequest.STATUS_OK;
                    break;
                }
                int flags = zero && !r.unmap() ? CMD_FLAG_NO_HOLE : 0;
                for (int g = 0; g < r.rangeCount(); g++) {
                    long off = r.rangeOffset(g), len = r.rangeLength(g);
                    for (long at = 0; at < len; at += MAX_RANGE_COMMAND) {
                        add(j, zero ? CMD_WRITE_ZEROES : CMD_TRIM, flags, off + at,
                                (int) Math.min(MAX_RANGE_COMMAND, len - at), 0);
                    }
                }
            }
        }
        if (j.outstanding == 0) {
            finish(j, true);
        }
    }

    /** One more command of job {@code j}, at the end of the FIFO. */
    void add(NbdJob j, int command, int flags, long diskOffset, int length, long dataOffset) {
        if (freeOpCount == 0) {
            growOps(ops.length);
        }
        NbdOp op = ops[freeOps[--freeOpCount]];
        op.job = j;
        op.command = command;
        op.flags = flags;
        op.diskOffset = diskOffset;
        op.length = length;
        op.dataOffset = dataOffset;
        j.outstanding++;
        live++;
        enqueue(op);
    }

    private void enqueue(NbdOp op) {
        op.state = WAITING;
        fifo[(fifoHead + fifoCount) % fifo.length] = op.index;
        fifoCount++;
    }

    /** The oldest command waiting to go out, or null; {@link #dequeue} takes it off the FIFO. */
    NbdOp nextWaiting() {
        return fifoCount > 0 ? ops[fifo[fifoHead]] : null;
    }

    void dequeue() {
        fifoHead = (fifoHead + 1) % fifo.length;
        fifoCount--;
    }

    boolean hasWaiting() {
        return fifoCount > 0;
    }

    /** A new connection: every live command waits to go out again, in pool order. Returns how many. */
    int requeue() {
        fifoHead = fifoCount = 0;
        int n = 0;
        for (NbdOp op : ops) {
            if (op.state != FREE) {
                enqueue(op);
                n++;
            }
        }
        return n;
    }

    /** The connection is gone: nothing is on the wire, and the FIFO is rebuilt by {@link #requeue}. */
    void unsend() {
        fifoHead = fifoCount = 0;
        for (NbdOp op : ops) {
            if (op.state == SENT) {
                op.state = WAITING;
            }
        }
    }

    /**
     * The sent command {@code cookie} names, or null (a reply for it would be the server's lie);
     * {@code sentBytes}: how much of the connection's stream has left (a command only part of
     * which went out cannot have a reply yet).
     */
    NbdOp inFlight(long cookie, long sentBytes) {
        int i = (int) cookie;
        if (i < 0 || i >= ops.length) {
            return null;
        }
        NbdOp op = ops[i];
        return op.state == SENT && op.generation == (int) (cookie >>> 32) && op.wireEnd <= sentBytes ? op : null;
    }

    /**
     * Command {@code op} is done with NBD error {@code error} (0: fine); its job completes with its
     * last command. {@code mayFlush}: the job's FLUSH after a write may still be sent (the owner is
     * neither failing nor closed).
     */
    void done(NbdOp op, int error, boolean mayFlush) {
        NbdJob j = op.job;
        int command = op.command;
        release(op);
        if (error != 0) {
            j.failed(command, error);
            op.logFailed(log, who, error, ++ioErrors);
        }
        if (--j.outstanding == 0) {
            finish(j, mayFlush);
        }
    }

    private void finish(NbdJob j, boolean mayFlush) {
        if (j.flushAfter && j.status == BlockRequest.STATUS_OK && mayFlush) {
            j.flushAfter = false;
            add(j, CMD_FLUSH, 0, 0, 0, 0);
            return;
        }
        BlockRequest r = j.request;
        CompletableFuture<Integer> internal = j.internal;
        int status = j.status;
        j.clear();
        freeJobs[freeJobCount++] = j;
        if (r != null) {
            r.complete(status);
        } else if (internal != null) {
            internal.complete(status);
        }
    }

    /**
     * Completes every live request with an I/O error and empties the FIFO; returns how many
     * requests. {@code timeout}: the server stayed away too long (each is counted in
     * {@link #failedOnTimeout} before it completes).
     */
    int failAll(boolean timeout) {
        int requests = 0;
        for (NbdOp op : ops) {
            NbdJob j = op.job;
            if (j != null) {
                j.status = BlockRequest.STATUS_IOERR;
                j.flushAfter = false;
                release(op);
                if (--j.outstanding == 0) {
                    requests++;
                    if (timeout) {
                        failedOnTimeout++; // the owner's thread only writes it
                    }
                    finish(j, false);
                }
            }
        }
        fifoHead = fifoCount = 0;
        return requests;
    }

    private void release(NbdOp op) {
        op.job = null;
        op.state = FREE;
        op.generation++;
        freeOps[freeOpCount++] = op.index;
        live--;
    }

    private void growJobs(int more) {
        freeJobs = Arrays.copyOf(freeJobs, freeJobs.length + more);
        for (int i = 0; i < more; i++) {
            freeJobs[freeJobCount++] = new NbdJob();
        }
    }

    private void growOps(int more) {
        int from = ops.length;
        ops = Arrays.copyOf(ops, from + more);
        freeOps = Arrays.copyOf(freeOps, from + more);
        int[] bigger = new int[from + more];
        for (int i = 0; i < fifoCount; i++) {
            bigger[i] = fifo[(fifoHead + i) % fifo.length];
        }
        fifo = bigger;
        fifoHead = 0;
        for (int i = from + more - 1; i >= from; i--) {
            ops[i] = new NbdOp(i);
            freeOps[freeOpCount++] = i;
        }
    }
}
