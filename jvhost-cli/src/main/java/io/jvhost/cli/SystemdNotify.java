package io.jvhost.cli;

import io.jvhost.core.sys.NativeException;
import io.jvhost.core.sys.UnixSockets;

import java.nio.charset.StandardCharsets;

/**
 * sd_notify for {@code Type=notify} services: when systemd started jvhost it passes a datagram
 * socket in {@code NOTIFY_SOCKET}, and jvhost sends {@code READY=1} there once every socket
 * listens (so a unit ordered after it, e.g. the VM, finds the socket), and {@code STOPPING=1} when a
 * signal starts the shutdown. Without {@code NOTIFY_SOCKET} nothing is sent.
 */
public final class SystemdNotify {
    private SystemdNotify() {}

    public static void ready(String status) {
        send("READY=1\nSTATUS=" + status + "\nMAINPID=" + ProcessHandle.current().pid());
    }

    /**
     * Live upgrade: the service's main process is {@code pid} from now on (systemd needs
     * {@code NotifyAccess=all} to take it from a process that is not the main one yet).
     */
    public static void mainPid(long pid) {
        send("MAINPID=" + pid);
    }

    public static void stopping() {
        send("STOPPING=1");
    }

    /** Sends {@code state} to systemd if it asked for it; a failure is a warning, never fatal. */
    static boolean send(String state) {
        String socket = System.getenv("NOTIFY_SOCKET");
        if (socket == null || socket.isEmpty()) {
            return false;
        }
        try {
            UnixSockets.sendDatagram(socket, state.getBytes(StandardCharsets.UTF_8));
            return true;
        } catch (NativeException e) {
            System.err.println("jvhost: cannot notify systemd at NOTIFY_SOCKET=" + socket + ": " + e.getMessage());
            return false;
        }
    }
}
