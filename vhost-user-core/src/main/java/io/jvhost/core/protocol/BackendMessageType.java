package io.jvhost.core.protocol;

/** Backend-to-frontend request codes, sent on the backend channel (SET_BACKEND_REQ_FD). */
public final class BackendMessageType {
    public static final int IOTLB_MSG = 1, CONFIG_CHANGE_MSG = 2, VRING_HOST_NOTIFIER_MSG = 3, VRING_CALL = 4,
            VRING_ERR = 5;

    private static final String[] NAMES = {"NONE", "IOTLB_MSG", "CONFIG_CHANGE_MSG", "VRING_HOST_NOTIFIER_MSG",
        "VRING_CALL", "VRING_ERR"};

    private BackendMessageType() {}

    public static String name(int request) {
        return request >= 0 && request < NAMES.length ? NAMES[request] : "UNKNOWN(" + request + ")";
    }
}
