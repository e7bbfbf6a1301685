package io.jvhost.testkit;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.jvhost.testkit.frontend.DriverQueue;
import io.jvhost.testkit.frontend.Frontend;
import io.jvhost.testkit.frontend.GuestRam;
import io.jvhost.core.protocol.Header;
import io.jvhost.core.protocol.MessageType;
import io.jvhost.core.sys.Fd;

import java.io.IOException;
import java.util.Set;
import java.util.TreeSet;

/**
 * A live-migration dirty log (LOG_SHMFD) as a device test's frontend sees it: handed over with
 * SET_LOG_BASE, read and cleared with {@code pread}/{@code pwrite} ({@link FileBytes}), and the
 * guest pages a range of guest memory touches, to compare with. Any thread.
 */
public final class DirtyPages {
    public static final long PAGE = 4096;

    private DirtyPages() {
    }

    /** SET_LOG_BASE of the first {@code size} bytes of {@code log}; asserts the empty reply QEMU expects. */
    public static void setLogBase(Frontend f, Fd log, long size) throws IOException {
        Frontend.Reply r = f.call(MessageType.SET_LOG_BASE, Payloads.logBase(size, 0), log);
        assertEquals(Header.VERSION | Header.REPLY, r.flags(), "SET_LOG_BASE reply flags");
        assertEquals(0, r.payload().length, "SET_LOG_BASE is answered with an empty payload");
    }

    /** Pages whose bit is set in the first {@code length} bytes of {@code log}. */
    public static Set<Long> read(Fd log, int length) {
        byte[] bitmap = FileBytes.read(log, 0, length);
        Set<Long> pages = new TreeSet<>();
        for (int i = 0; i < bitmap.length; i++) {
            for (int b = 0; b < 8; b++) {
                if ((bitmap[i] & (1 << b)) != 0) {
                    pages.add(8L * i + b); // little-endian u64 words: page p is bit p % 8 of byte p / 8
                }
            }
        }
        return pages;
    }

    /** Clears the first {@code length} bytes of {@code log}. */
    public static void clear(Fd log, int length) {
        FileBytes.write(log, 0, new byte[length]);
    }

    /** Pages that {@code [gpa, gpa + length)} touches; none for an empty range. */
    public static Set<Long> pages(long gpa, long length) {
        Set<Long> pages = new TreeSet<>();
        for (long p = gpa / PAGE; length > 0 && p <= (gpa + length - 1) / PAGE; p++) {
            pages.add(p);
        }
        return pages;
    }

    /** The guest-physical address of {@code q}'s used ring. */
    public static long usedRingGpa(DriverQueue q) {
        return q.usedHva() - GuestRam.HVA_BASE;
    }

    /** Every page of {@code q}'s used ring, flags and avail_event included. */
    public static Set<Long> usedRingPages(DriverQueue q) {
        return pages(usedRingGpa(q), 6 + 8L * q.size());
    }

    /**
     * The pages a device must have marked for publishing used elements {@code [from, to)} of
     * {@code q} when its used ring is logged at {@code logGpa}: those elements and the index.
     */
    public static Set<Long> usedElementPages(DriverQueue q, long logGpa, int from, int to) {
        Set<Long> pages = new TreeSet<>(pages(logGpa + 2, 2));
        for (int i = from; i != to; i = (i + 1) & 0xFFFF) {
            pages.addAll(pages(logGpa + 4 + 8L * (i % q.size()), 8));
        }
        return pages;
    }

    @SafeVarargs
    public static Set<Long> union(Set<Long>... sets) {
        Set<Long> all = new TreeSet<>();
        for (Set<Long> s : sets) {
            all.addAll(s);
        }
        return all;
    }

    /** The pages both {@code a} and {@code b} hold. */
    public static Set<Long> intersection(Set<Long> a, Set<Long> b) {
        Set<Long> both = new TreeSet<>(a);
        both.retainAll(b);
        return both;
    }

    /** {@code a} without the pages of {@code b}. */
    public static Set<Long> minus(Set<Long> a, Set<Long> b) {
        Set<Long> rest = new TreeSet<>(a);
        rest.removeAll(b);
        return rest;
    }
}
