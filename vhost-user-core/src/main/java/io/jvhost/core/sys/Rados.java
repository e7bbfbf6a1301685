package io.jvhost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;
import java.time.Duration;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * A connection to a Ceph cluster through librados ({@code rados_t}), from which RBD images are
 * opened ({@link #openImage}). Control path: every method may block (on the monitors, within the
 * timeout given to {@link #connect}); failures are {@link NativeException}s carrying the errno
 * librados returned, with a message a person can act on.
 *
 * <p>The libraries (Debian {@code librbd1}, {@code librados2}) are loaded on first use; without
 * them {@link #libraryProblem()} says so and {@link #connect} throws {@link IllegalStateException}
 * with that message. Thread-safe; close once, after every image opened from it is closed.
 */
public final class Rados implements AutoCloseable {
    static final int ENOENT = 2, EIO = 5, EACCES = 13, EINVAL = 22, ETIMEDOUT = 110;

    private final long cluster;
    private final String description;
    private boolean closed;

    private Rados(long cluster, String description) {
        this.cluster = cluster;
        this.description = description;
    }

    /** Why librbd/librados cannot be used here (one line with the package to install), or null if they can. */
    public static String libraryProblem() {
        return LibRbd.PROBLEM;
    }

    /**
     * Reads {@code conf} (a ceph.conf), then connects as {@code client.<id>} ({@code id} null means
     * {@code admin}). A monitor that does not answer fails the call with ETIMEDOUT after
     * {@code timeout} (client_mount_timeout and rados_mon_op_timeout), never hangs. Librados's
     * own stderr logging is off unless the conf file turns it on (it logs to its log file).
     */
    public static Rados connect(Path conf, String id, Duration timeout) throws NativeException {
        if (LibRbd.PROBLEM != null) {
            throw new IllegalStateException(LibRbd.PROBLEM);
        }
        String name = "client." + (id == null || id.isEmpty() ? "admin" : id);
        String seconds = String.valueOf(Math.max(1, timeout.toSeconds()));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_LONG);
            int r = (int) LibRbd.RADOS_CREATE2.invokeExact(out, arena.allocateFrom("ceph"), arena.allocateFrom(name), 0L);
            if (r < 0) {
                throw new NativeException("rados_create2 as " + name, -r);
            }
            long cluster = out.get(JAVA_LONG, 0);
            Rados rados = new Rados(cluster, name + " with " + conf);
            boolean ok = false;
            try {
                rados.set(arena, "log_to_stderr", "false");
                rados.set(arena, "err_to_stderr", "false");
                r = (int) LibRbd.RADOS_CONF_READ_FILE.invokeExact(cluster, arena.allocateFrom(conf.toString()));
                if (r < 0) {
                    throw new NativeException("reading Ceph configuration " + conf
                            + (-r == ENOENT ? " (no such file)" : ""), -r);
                }
                rados.set(arena, "client_mount_timeout", seconds);
                rados.set(arena, "rados_mon_op_timeout", seconds);
                r = (int) LibRbd.RADOS_CONNECT.invokeExact(cluster);
                if (r < 0) {
                    String why = switch (-r) {
                        case ETIMEDOUT -> " (no monitor answered within " + seconds + " s)";
                        case ENOENT -> " (the configuration names no monitor, or a keyring is missing)";
                        case EACCES, 1 -> " (authentication refused)";
                        default -> "";
                    };
                    throw new NativeException("connecting to the Ceph cluster of " + conf + " as " + name + why, -r);
                }
                ok = true;
                return rados;
            } finally {
                if (!ok) {
                    rados.close();
                }
            }
        } catch (NativeException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    private void set(Arena arena, String option, String value) throws Throwable {
        int r = (int) LibRbd.RADOS_CONF_SET.invokeExact(cluster, arena.allocateFrom(option), arena.allocateFrom(value));
        if (r < 0) {
            throw new NativeException("rados_conf_set " + option + "=" + value, -r);
        }
    }

    /**
     * Opens {@code image} in {@code pool} (read-only if asked: no writes, no lock, no watch).
     * Fails with ENOENT naming the pool or the image that does not exist.
     */
    public RbdImage openImage(String pool, String image, boolean readOnly) throws NativeException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(JAVA_LONG);
            int r = (int) LibRbd.RADOS_IOCTX_CREATE.invokeExact(cluster, arena.allocateFrom(pool), out);
            if (r < 0) {
                throw new NativeException("opening pool '" + pool + "'" + (-r == ENOENT ? " (no such pool)" : ""), -r);
            }
            long ioctx = out.get(JAVA_LONG, 0);
            MethodHandle open = readOnly ? LibRbd.RBD_OPEN_READ_ONLY : LibRbd.RBD_OPEN;
            r = (int) open.invokeExact(ioctx, arena.allocateFrom(image), out, MemorySegment.NULL);
            if (r < 0) {
                LibRbd.RADOS_IOCTX_DESTROY.invokeExact(ioctx);
                throw new NativeException("opening RBD image '" + pool + "/" + image + "'"
                        + (-r == ENOENT ? " (no such image)" : ""), -r);
            }
            return new RbdImage(ioctx, out.get(JAVA_LONG, 0), pool + "/" + image, readOnly);
        } catch (NativeException | RuntimeException | Error e) {
            throw e;
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    /** rados_shutdown. Close every image first. Closing again does nothing. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            LibRbd.RADOS_SHUTDOWN.invokeExact(cluster);
        } catch (Throwable t) {
            throw LibC.rethrow(t);
        }
    }

    @Override
    public String toString() {
        return "rados " + description;
    }
}
