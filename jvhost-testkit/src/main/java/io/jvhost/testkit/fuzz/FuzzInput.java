package io.jvhost.testkit.fuzz;

/**
 * A fuzz input read as a stream of decisions: every call takes the next bytes and turns them into a
 * value, and an exhausted input answers 0 forever, so any byte array is a valid input and a shorter
 * one is a simpler one (what the minimizer relies on). Values are mostly picked from tables of
 * interesting ones (boundaries, lies, overflows), with an escape to raw bits.
 */
public final class FuzzInput {
    private final byte[] data;
    private int pos;

    public FuzzInput(byte[] data) {
        this.data = data;
    }

    public boolean exhausted() {
        return pos >= data.length;
    }

    public int u8() {
        return pos < data.length ? data[pos++] & 0xFF : 0;
    }

    public int u16() {
        return u8() | u8() << 8;
    }

    public int u32() {
        return u16() | u16() << 16;
    }

    public long u64() {
        return Integer.toUnsignedLong(u32()) | (long) u32() << 32;
    }

    public boolean bool() {
        return (u8() & 1) != 0;
    }

    /** A value in {@code [0, n)}; {@code n} up to 65536. */
    public int below(int n) {
        if (n <= 1) {
            return 0;
        }
        return (n <= 256 ? u8() : u16()) % n;
    }

    /** A value in {@code [min, max]}; the range at most 65536 wide. */
    public int between(int min, int max) {
        return min + below(max - min + 1);
    }

    public int pick(int... values) {
        return values[below(values.length)];
    }

    public long pick(long... values) {
        return values[below(values.length)];
    }

    /** One of {@code table} (the first when exhausted), or once in eight a raw 64-bit value. */
    public long choose(long... table) {
        int s = u8();
        return (s & 7) == 7 ? u64() : table[(s >>> 3) % table.length];
    }

    /** One of {@code table} (the first when exhausted), or once in eight a raw 32-bit value. */
    public int choose(int... table) {
        int s = u8();
        return (s & 7) == 7 ? u32() : table[(s >>> 3) % table.length];
    }

    /** {@code length} bytes (zeros past the end). */
    public byte[] bytes(int length) {
        byte[] b = new byte[length];
        for (int i = 0; i < length; i++) {
            b[i] = (byte) u8();
        }
        return b;
    }
}
