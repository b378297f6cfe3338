//! Kubernetes resource quantities (`100m`, `1.5`, `64Mi`, `1e3`) reduced to integers: milli-units for
//! cpu, whole units (bytes, counts) for everything else. Rounding is upwards, as `resource.Quantity`'s
//! `MilliValue()` and `Value()` do, so a request is never under-counted.

use crate::Error;

/// Parses a quantity into thousandths of its unit, rounded up (`"100m"` -> 100, `"1.5"` -> 1500,
/// `"1Ki"` -> 1_024_000). Values beyond `i64` saturate.
pub fn parse_milli(s: &str) -> Result<i64, Error> {
    scaled(s, 3)
}

/// Parses a quantity into whole units, rounded up (`"64Mi"` -> 67_108_864, `"500m"` -> 1).
pub fn parse_value(s: &str) -> Result<i64, Error> {
    scaled(s, 0)
}

/// `value * 10^extra_exp10`, rounded up, as an `i64` (saturating).
fn scaled(s: &str, extra_exp10: i32) -> Result<i64, Error> {
    let invalid = || Error::InvalidQuantity(s.to_owned());
    let text = s.trim();
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(invalid());
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    // Significant digits as an integer mantissa; the decimal point moves the exponent.
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(invalid());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| invalid())?
    };
    let mut exp10 = extra_exp10 - i32::try_from(fraction.len()).map_err(|_| invalid())?;
    let mut exp2 = 0u32;
    match suffix {
        "" => {}
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        other => {
            let exponent = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(invalid)?;
            let e: i32 = exponent.parse().map_err(|_| invalid())?;
            if !(-40..=40).contains(&e) {
                return Err(invalid());
            }
            exp10 += e;
        }
    }
    let mut value = mantissa.checked_shl(exp2).unwrap_or(i128::MAX);
    if exp2 > 0 && mantissa > (i128::MAX >> exp2) {
        value = i128::MAX;
    }
    if exp10 >= 0 {
        for _ in 0..exp10 {
            value = value.saturating_mul(10);
        }
    } else {
        let divisor = 10i128
            .checked_pow(exp10.unsigned_abs())
            .unwrap_or(i128::MAX);
        // Round away from zero (upwards for the magnitude), like resource.Quantity.
        value = value / divisor + i128::from(value % divisor != 0);
    }
    let signed = if negative { -value } else { value };
    Ok(i64::try_from(signed).unwrap_or(if negative { i64::MIN } else { i64::MAX }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_quantities() {
        let cases: &[(&str, i64, i64)] = &[
            // (input, milli, value)
            ("100m", 100, 1),
            ("1", 1000, 1),
            ("1.5", 1500, 2),
            ("0.1", 100, 1),
            ("250m", 250, 1),
            ("0", 0, 0),
            ("64Mi", 64 * 1024 * 1024 * 1000, 64 * 1024 * 1024),
            ("1Gi", 1_073_741_824_000, 1_073_741_824),
            ("500M", 500_000_000_000, 500_000_000),
            ("1e3", 1_000_000, 1000),
            ("1E3", 1_000_000, 1000),
            ("2k", 2_000_000, 2000),
            ("1.5Gi", 1_610_612_736_000, 1_610_612_736),
            ("1n", 1, 1),
            ("10u", 1, 1),
            ("128Gi", 137_438_953_472_000, 137_438_953_472),
            ("+3", 3000, 3),
            ("-1", -1000, -1),
            ("32", 32_000, 32),
            ("110", 110_000, 110),
        ];
        for &(input, milli, value) in cases {
            assert_eq!(parse_milli(input).ok(), Some(milli), "milli of {input}");
            assert_eq!(parse_value(input).ok(), Some(value), "value of {input}");
        }
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(parse_milli("8Ei").ok(), Some(i64::MAX));
        assert_eq!(parse_value("1e40").ok(), Some(i64::MAX));
    }

    #[test]
    fn rejects_malformed_quantities() {
        for input in ["", "abc", "1.2.3", "1Xi", "Mi", ".", "1e", "1e1000", "1 Gi"] {
            assert!(parse_milli(input).is_err(), "{input:?} should be rejected");
        }
    }
}
