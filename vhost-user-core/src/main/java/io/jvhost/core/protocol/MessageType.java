package io.jvhost.core.protocol;

/** Frontend-to-backend request codes of the vhost-user protocol, and their names for the trace. */
public final class MessageType {
    public static final int GET_FEATURES = 1, SET_FEATURES = 2, SET_OWNER = 3, RESET_OWNER = 4,
            SET_MEM_TABLE = 5, SET_LOG_BASE = 6, SET_LOG_FD = 7, SET_VRING_NUM = 8, SET_VRING_ADDR = 9,
            SET_VRING_BASE = 10, GET_VRING_BASE = 11, SET_VRING_KICK = 12, SET_VRING_CALL = 13,
            SET_VRING_ERR = 14, GET_PROTOCOL_FEATURES = 15, SET_PROTOCOL_FEATURES = 16, GET_QUEUE_NUM = 17,
            SET_VRING_ENABLE = 18, SEND_RARP = 19, NET_SET_MTU = 20, SET_BACKEND_REQ_FD = 21, IOTLB_MSG = 22,
            SET_VRING_ENDIAN = 23, GET_CONFIG = 24, SET_CONFIG = 25, CREATE_CRYPTO_SESSION = 26,
            CLOSE_CRYPTO_SESSION = 27, POSTCOPY_ADVISE = 28, POSTCOPY_LISTEN = 29, POSTCOPY_END = 30,
            GET_INFLIGHT_FD = 31, SET_INFLIGHT_FD = 32, GPU_SET_SOCKET = 33, RESET_DEVICE = 34, VRING_KICK = 35,
            GET_MAX_MEM_SLOTS = 36, ADD_MEM_REG = 37, REM_MEM_REG = 38, SET_STATUS = 39, GET_STATUS = 40;

    private static final String[] NAMES = {"NONE", "GET_FEATURES", "SET_FEATURES", "SET_OWNER", "RESET_OWNER",
        "SET_MEM_TABLE", "SET_LOG_BASE", "SET_LOG_FD", "SET_VRING_NUM", "SET_VRING_ADDR", "SET_VRING_BASE",
        "GET_VRING_BASE", "SET_VRING_KICK", "SET_VRING_CALL", "SET_VRING_ERR", "GET_PROTOCOL_FEATURES",
        "SET_PROTOCOL_FEATURES", "GET_QUEUE_NUM", "SET_VRING_ENABLE", "SEND_RARP", "NET_SET_MTU",
        "SET_BACKEND_REQ_FD", "IOTLB_MSG", "SET_VRING_ENDIAN", "GET_CONFIG", "SET_CONFIG",
        "CREATE_CRYPTO_SESSION", "CLOSE_CRYPTO_SESSION", "POSTCOPY_ADVISE", "POSTCOPY_LISTEN", "POSTCOPY_END",
        "GET_INFLIGHT_FD", "SET_INFLIGHT_FD", "GPU_SET_SOCKET", "RESET_DEVICE", "VRING_KICK",
        "GET_MAX_MEM_SLOTS", "ADD_MEM_REG", "REM_MEM_REG", "SET_STATUS", "GET_STATUS"};

    private MessageType() {}

    public static String name(int request) {
        return request >= 0 && request < NAMES.length ? NAMES[request] : "UNKNOWN(" + request + ")";
    }

    /**
     * Requests whose reply is a payload of their own, sent whatever the NEED_REPLY flag says.
     * SET_LOG_BASE gets an empty one: QEMU waits for it (LOG_SHMFD is always offered).
     */
    public static boolean hasOwnReply(int request) {
        return switch (request) {
            case GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, GET_CONFIG,
                 GET_INFLIGHT_FD, GET_VRING_BASE, GET_STATUS, SET_LOG_BASE -> true;
            default -> false;
        };
    }
}
