package io.jvhost.core.ring;

import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

import static java.nio.ByteOrder.LITTLE_ENDIAN;

/**
 * The little-endian, aligned layouts and handles every ring structure is read and written with
 * (virtio is little-endian whatever the host): defined once for the rings and the inflight logs.
 */
final class LeLayouts {
    static final ValueLayout.OfShort LE_SHORT = ValueLayout.JAVA_SHORT.withOrder(LITTLE_ENDIAN);
    static final ValueLayout.OfInt LE_INT = ValueLayout.JAVA_INT.withOrder(LITTLE_ENDIAN);
    static final ValueLayout.OfLong LE_LONG = ValueLayout.JAVA_LONG.withOrder(LITTLE_ENDIAN);
    static final VarHandle U16_VH = LE_SHORT.varHandle();
    static final VarHandle U32_VH = LE_INT.varHandle();

    private LeLayouts() {
    }
}
