//! Resource quantities (`resource.Quantity`: `250m`, `1`, `12345n`, `128Mi`, `1e3`) as integer
//! thousandths of a unit, the form Kubernetes' controllers compute with (`Quantity.MilliValue()`),
//! and thousandths written back in the canonical decimal form (`NewMilliQuantity(v, DecimalSI)`).

/// The decimal exponent of a decimal-SI suffix.
fn decimal_suffix(suffix: &str) -> Option<i32> {
    Some(match suffix {
        "n" => -9,
        "u" => -6,
        "m" => -3,
        "" => 0,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        _ => return None,
    })
}

/// The power of two of a binary-SI suffix.
fn binary_suffix(suffix: &str) -> Option<u32> {
    Some(match suffix {
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        "Ti" => 40,
        "Pi" => 50,
        "Ei" => 60,
        _ => return None,
    })
}

/// `10^exp` when it fits an `i128`.
fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

/// The value of `quantity` in thousandths of a unit, rounded up as `MilliValue` rounds (away from
/// zero); `None` when malformed. Values beyond `i64` saturate.
pub(crate) fn milli_value(quantity: &str) -> Option<i64> {
    let (negative, unsigned) = match quantity.as_bytes().first()? {
        b'-' => (true, &quantity[1..]),
        b'+' => (false, &quantity[1..]),
        _ => (false, quantity),
    };
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');

    // value = digits * 10^exp10 * 2^exp2, in units.
    let mut exp10 = -i32::try_from(fraction.len()).ok()?;
    let mut exp2 = 0;
    if let Some(e) = decimal_suffix(suffix) {
        exp10 += e;
    } else if let Some(e) = binary_suffix(suffix) {
        exp2 = e;
    } else {
        let exponent = suffix.strip_prefix(['e', 'E'])?;
        let valid = !exponent.is_empty()
            && exponent
                .trim_start_matches(['+', '-'])
                .chars()
                .all(|c| c.is_ascii_digit());
        if !valid {
            return None;
        }
        exp10 += exponent.parse::<i32>().ok()?.clamp(-1000, 1000);
    }
    if digits.is_empty() {
        return Some(0);
    }
    let saturated = Some(if negative { i64::MIN } else { i64::MAX });
    if digits.len() > 36 {
        return saturated;
    }
    let mantissa: i128 = digits.parse().ok()?;
    let Some(mut milli) = mantissa.checked_mul(1i128 << exp2) else {
        return saturated;
    };
    // Thousandths: three more decimal places.
    let exp10 = exp10 + 3;
    if exp10 >= 0 {
        match pow10(exp10.unsigned_abs()).and_then(|p| milli.checked_mul(p)) {
            Some(v) => milli = v,
            None => return saturated,
        }
    } else {
        // Round up: any remainder adds one thousandth.
        milli = match pow10(exp10.unsigned_abs()) {
            Some(p) => milli / p + i128::from(milli % p != 0),
            None => 1,
        };
    }
    let milli = if negative { -milli } else { milli };
    Some(i64::try_from(milli).unwrap_or(if negative { i64::MIN } else { i64::MAX }))
}

/// Thousandths as a canonical decimal quantity: `250m`, `1`, `1500m`, `2k`, `104857600`.
pub(crate) fn format_milli(milli: i64) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let mut value = milli / 1000;
    let mut suffix = "";
    for next in ["k", "M", "G", "T", "P", "E"] {
        if value == 0 || value % 1000 != 0 {
            break;
        }
        value /= 1000;
        suffix = next;
    }
    format!("{value}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_thousandths_rounded_up() {
        let cases = [
            ("250m", Some(250)),
            ("1", Some(1000)),
            ("1.5", Some(1500)),
            (".5", Some(500)),
            ("0.1", Some(100)),
            ("0", Some(0)),
            ("0m", Some(0)),
            ("12345n", Some(1)),
            ("1000000n", Some(1)),
            ("1500000n", Some(2)),
            ("100u", Some(1)),
            ("2k", Some(2_000_000)),
            ("3M", Some(3_000_000_000)),
            ("1G", Some(1_000_000_000_000)),
            ("1Ki", Some(1_024_000)),
            ("1Mi", Some(1_048_576_000)),
            ("1234Ki", Some(1_263_616_000)),
            ("1.5Gi", Some(1_610_612_736_000)),
            ("1e3", Some(1_000_000)),
            ("1E3", Some(1_000_000)),
            ("5e-3", Some(5)),
            ("1e-9", Some(1)),
            ("+2", Some(2000)),
            ("-1", Some(-1000)),
            ("1E", Some(i64::MAX)),
            ("9Ei", Some(i64::MAX)),
            ("", None),
            ("m", None),
            ("abc", None),
            ("1.2.3", None),
            ("1Zi", None),
            ("1e", None),
            ("1e3.5", None),
            (" 1", None),
        ];
        for (quantity, want) in cases {
            assert_eq!(milli_value(quantity), want, "{quantity:?}");
        }
    }

    #[test]
    fn thousandths_format_canonically() {
        let cases = [
            (250, "250m"),
            (1000, "1"),
            (1500, "1500m"),
            (0, "0"),
            (2_000_000, "2k"),
            (104_857_600_000, "104857600"),
            (1_000_000_000, "1M"),
        ];
        for (milli, want) in cases {
            assert_eq!(format_milli(milli), want);
        }
    }
}
