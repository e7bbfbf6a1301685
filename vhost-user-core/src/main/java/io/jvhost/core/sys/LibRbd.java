package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Downcall handles into librbd and librados, loaded when this class is first used so that machines
 * without Ceph's libraries run everything else. {@link #PROBLEM} says why loading failed (then every
 * handle is null and nothing may call them); {@link Rados} checks it before anything else.
 *
 * <p>Pointers on the data path (image, completion, iovec array) travel as {@code long} addresses so
 * the calls create no segment objects; librbd returns {@code -errno} itself, so nothing captures errno.
 * The system property {@code jvhost.librbd} names another library file (tests use it to see the
 * message a machine without librbd gives).
 */
final class LibRbd {
    static final String LIBRARY = System.getProperty("jvhost.librbd", "librbd.so.1");
    static final String RADOS_LIBRARY = System.getProperty("jvhost.librados", "librados.so.2");
    /** null when the libraries loaded; else one line saying what is missing and how to get it. */
    static final String PROBLEM;
    private static final SymbolLookup LOOKUP;
    private static final Linker LINKER = Linker.nativeLinker();

    static {
        SymbolLookup lookup = null;
        String problem = null;
        try {
            // librbd needs librados loaded; look both up, librados first, so each symbol is found.
            lookup = SymbolLookup.libraryLookup(RADOS_LIBRARY, Arena.global())
                    .or(SymbolLookup.libraryLookup(LIBRARY, Arena.global()));
        } catch (IllegalArgumentException | IllegalCallerException e) {
            problem = "cannot load " + LIBRARY + "/" + RADOS_LIBRARY + " (" + e.getMessage()
                    + "); install Ceph's client libraries: apt-get install librbd1";
        }
        LOOKUP = lookup;
        PROBLEM = problem;
    }

    // librados, control path
    static final MethodHandle RADOS_CREATE2 = bind("rados_create2", JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_LONG);
    static final MethodHandle RADOS_CONF_READ_FILE = bind("rados_conf_read_file", JAVA_INT, JAVA_LONG, ADDRESS);
    static final MethodHandle RADOS_CONF_SET = bind("rados_conf_set", JAVA_INT, JAVA_LONG, ADDRESS, ADDRESS);
    static final MethodHandle RADOS_CONNECT = bind("rados_connect", JAVA_INT, JAVA_LONG);
    static final MethodHandle RADOS_SHUTDOWN = bindVoid("rados_shutdown", JAVA_LONG);
    static final MethodHandle RADOS_IOCTX_CREATE = bind("rados_ioctx_create", JAVA_INT, JAVA_LONG, ADDRESS, ADDRESS);
    static final MethodHandle RADOS_IOCTX_DESTROY = bindVoid("rados_ioctx_destroy", JAVA_LONG);

    // librbd, control path
    static final MethodHandle RBD_OPEN = bind("rbd_open", JAVA_INT, JAVA_LONG, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle RBD_OPEN_READ_ONLY = bind("rbd_open_read_only", JAVA_INT, JAVA_LONG, ADDRESS, ADDRESS, ADDRESS);
    static final MethodHandle RBD_CLOSE = bind("rbd_close", JAVA_INT, JAVA_LONG);
    static final MethodHandle RBD_GET_SIZE = bind("rbd_get_size", JAVA_INT, JAVA_LONG, ADDRESS);
    static final MethodHandle RBD_SET_IMAGE_NOTIFICATION = bind("rbd_set_image_notification", JAVA_INT, JAVA_LONG, JAVA_INT, JAVA_INT);

    // librbd, data path: addresses as longs
    static final MethodHandle RBD_AIO_CREATE_COMPLETION =
            bind("rbd_aio_create_completion", JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG);
    static final MethodHandle RBD_AIO_READV = bind("rbd_aio_readv", JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG);
    static final MethodHandle RBD_AIO_WRITEV = bind("rbd_aio_writev", JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_LONG, JAVA_LONG);
    static final MethodHandle RBD_AIO_FLUSH = bind("rbd_aio_flush", JAVA_INT, JAVA_LONG, JAVA_LONG);
    static final MethodHandle RBD_AIO_DISCARD = bind("rbd_aio_discard", JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG);
    static final MethodHandle RBD_AIO_WRITE_ZEROES =
            bind("rbd_aio_write_zeroes", JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, JAVA_INT);
    static final MethodHandle RBD_AIO_GET_RETURN_VALUE = bind("rbd_aio_get_return_value", JAVA_LONG, JAVA_LONG);
    static final MethodHandle RBD_AIO_GET_ARG = bind("rbd_aio_get_arg", JAVA_LONG, JAVA_LONG);
    static final MethodHandle RBD_AIO_RELEASE = bindVoid("rbd_aio_release", JAVA_LONG);
    static final MethodHandle RBD_POLL_IO_EVENTS = bind("rbd_poll_io_events", JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT);

    private LibRbd() {}

    private static MethodHandle bind(String name, MemoryLayout result, MemoryLayout... args) {
        return LOOKUP == null ? null
                : LINKER.downcallHandle(find(name), FunctionDescriptor.of(result, args));
    }

    private static MethodHandle bindVoid(String name, MemoryLayout... args) {
        return LOOKUP == null ? null : LINKER.downcallHandle(find(name), FunctionDescriptor.ofVoid(args));
    }

    private static java.lang.foreign.MemorySegment find(String name) {
        return LOOKUP.find(name).orElseThrow(() -> new IllegalStateException(
                LIBRARY + " has no " + name + ": a librbd older than Ceph 14 (Nautilus)?"));
    }
}
