package io.jvhost.core.ring;

/** Why a descriptor chain was refused. Each has its own counter and is logged once per queue. */
public enum ChainError {
    NEXT_OUT_OF_RANGE("next index beyond the table"),
    CHAIN_TOO_LONG("chain longer than the queue (a loop)"),
    BUFFER_UNMAPPED("buffer outside guest memory or across regions"),
    BUFFER_TOO_LONG("buffer of 2 GiB or more"),
    READABLE_AFTER_WRITABLE("device-readable descriptor after a writable one"),
    INDIRECT_NOT_NEGOTIATED("indirect descriptor without RING_INDIRECT_DESC"),
    INDIRECT_NESTED("indirect descriptor inside an indirect table"),
    INDIRECT_WITH_NEXT("indirect descriptor with NEXT set"),
    INDIRECT_BAD_LENGTH("indirect table length zero, not a multiple of 16, or too long"),
    INDIRECT_UNMAPPED("indirect table outside guest memory or across regions");

    private final String description;

    ChainError(String description) {
        this.description = description;
    }

    public String description() {
        return description;
    }
}
