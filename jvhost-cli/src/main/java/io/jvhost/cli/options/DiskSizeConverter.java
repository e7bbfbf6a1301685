package io.jvhost.cli.options;

import java.util.Locale;

import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * A disk size option such as {@code --ram 1G}: a whole number of bytes, or of KiB, MiB, GiB or TiB
 * with a suffix K, M, G or T (either case), positive and a whole number of 512-byte sectors.
 * picocli reports a bad value as {@code Invalid value for option '--ram': ...}.
 */
public final class DiskSizeConverter implements ITypeConverter<Long> {
    private static final int SECTOR = 512;

    @Override
    public Long convert(String value) {
        String t = value.strip().toUpperCase(Locale.ROOT);
        int shift = t.isEmpty() ? 0 : switch (t.charAt(t.length() - 1)) {
            case 'K' -> 10;
            case 'M' -> 20;
            case 'G' -> 30;
            case 'T' -> 40;
            default -> 0;
        };
        String digits = shift == 0 ? t : t.substring(0, t.length() - 1);
        if (digits.isEmpty() || !digits.chars().allMatch(Character::isDigit)) {
            throw new TypeConversionException("'" + value + "' is not a size: a whole number of bytes, or with a suffix K, M, G or T");
        }
        long bytes;
        try {
            bytes = Math.multiplyExact(Long.parseLong(digits), 1L << shift);
        } catch (ArithmeticException | NumberFormatException e) {
            throw new TypeConversionException("'" + value + "' is too large");
        }
        if (bytes == 0 || bytes % SECTOR != 0) {
            throw new TypeConversionException("'" + value + "' is not a positive multiple of " + SECTOR + " bytes");
        }
        return bytes;
    }
}
