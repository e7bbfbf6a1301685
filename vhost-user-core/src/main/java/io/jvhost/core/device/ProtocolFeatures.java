package io.jvhost.core.device;

/**
 * vhost-user protocol feature bits (GET/SET_PROTOCOL_FEATURES); the virtio ones are in
 * {@link VirtioFeatures}. Which of them the framework offers is {@code runtime.FeaturePolicy}.
 */
public final class ProtocolFeatures {
    public static final int MQ = 0, LOG_SHMFD = 1, RARP = 2, REPLY_ACK = 3, MTU = 4, BACKEND_REQ = 5,
            CROSS_ENDIAN = 6, CRYPTO_SESSION = 7, PAGEFAULT = 8, CONFIG = 9, BACKEND_SEND_FD = 10,
            HOST_NOTIFIER = 11, INFLIGHT_SHMFD = 12, RESET_DEVICE = 13, INBAND_NOTIFICATIONS = 14,
            CONFIGURE_MEM_SLOTS = 15, STATUS = 16;

    private ProtocolFeatures() {}

    public static long bit(int n) {
        return 1L << n;
    }
}
