//! Resource quantities (`resource.Quantity`): parsing, comparing and the canonical form that
//! kube-apiserver writes back (`1000m` → `1`, `1024Mi` → `1Gi`, `0.5` → `500m`).
//!
//! Values are held exactly in nano-units (the finest scale Kubernetes keeps) in an `i128`;
//! anything that overflows that is treated as unparseable rather than wrapped.

use std::cmp::Ordering;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// A parsed quantity: `nanos` is the value times 10^9, rounded up to a whole nano.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Quantity {
    pub(crate) nanos: i128,
    pub(crate) format: Format,
}

const NANO: i128 = 1_000_000_000;

fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

impl Quantity {
    pub(crate) fn parse(input: &str) -> Option<Quantity> {
        let s = input.trim();
        if s.is_empty() || s.len() > 64 {
            return None;
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        // value = mantissa * 10^(dec_exp) * 2^(bin_exp)
        let frac_len = i32::try_from(frac_part.len()).ok()?;
        let (dec_exp, bin_exp, format) = match suffix {
            "" => (0, 0, Format::DecimalSi),
            "n" => (-9, 0, Format::DecimalSi),
            "u" => (-6, 0, Format::DecimalSi),
            "m" => (-3, 0, Format::DecimalSi),
            "k" => (3, 0, Format::DecimalSi),
            "M" => (6, 0, Format::DecimalSi),
            "G" => (9, 0, Format::DecimalSi),
            "T" => (12, 0, Format::DecimalSi),
            "P" => (15, 0, Format::DecimalSi),
            "E" => (18, 0, Format::DecimalSi),
            "Ki" => (0, 10, Format::BinarySi),
            "Mi" => (0, 20, Format::BinarySi),
            "Gi" => (0, 30, Format::BinarySi),
            "Ti" => (0, 40, Format::BinarySi),
            "Pi" => (0, 50, Format::BinarySi),
            "Ei" => (0, 60, Format::BinarySi),
            other => {
                let exp = other.strip_prefix(['e', 'E'])?;
                let exp: i32 = exp.parse().ok()?;
                if !(-40..=40).contains(&exp) {
                    return None;
                }
                (exp, 0, Format::DecimalExponent)
            }
        };
        // nanos = mantissa * 10^(dec_exp - frac_len + 9) * 2^bin_exp, rounded up.
        let scale = dec_exp - frac_len + 9;
        let mut value = mantissa.checked_mul(1i128.checked_shl(bin_exp)?)?;
        if scale >= 0 {
            value = value.checked_mul(pow10(u32::try_from(scale).ok()?)?)?;
        } else {
            let div = pow10(u32::try_from(-scale).ok()?)?;
            let (q, r) = (value / div, value % div);
            value = if r > 0 { q + 1 } else { q };
        }
        Some(Quantity {
            nanos: if negative { -value } else { value },
            format,
        })
    }

    /// `SetDefaults_ResourceList`: values are rounded up to milli precision.
    pub(crate) fn round_up_to_milli(self) -> Quantity {
        let milli = NANO / 1000;
        let r = self.nanos.rem_euclid(milli);
        let nanos = if r == 0 {
            self.nanos
        } else {
            self.nanos - r + milli
        };
        Quantity { nanos, ..self }
    }

    /// The canonical string, as `Quantity.String()` prints it.
    pub(crate) fn canonical(self) -> String {
        if self.nanos == 0 {
            return "0".to_owned();
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        if self.format == Format::BinarySi && abs.is_multiple_of(NANO as u128) {
            let mut whole = abs / NANO as u128;
            let suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut i = 0;
            while i + 1 < suffixes.len() && whole.is_multiple_of(1024) && whole >= 1024 {
                whole /= 1024;
                i += 1;
            }
            // Kubernetes only uses a binary suffix when the value is at least 1024.
            return format!("{sign}{whole}{}", suffixes[i]);
        }
        // Decimal: mantissa * 10^exp with exp a multiple of 3 in [-9, 18].
        let mut mantissa = abs;
        let mut exp: i32 = -9;
        while mantissa.is_multiple_of(1000) && exp < 18 {
            mantissa /= 1000;
            exp += 3;
        }
        let suffix = match (self.format, exp) {
            (Format::DecimalExponent, 0) => String::new(),
            (Format::DecimalExponent, e) => format!("e{e}"),
            (_, -9) => "n".to_owned(),
            (_, -6) => "u".to_owned(),
            (_, -3) => "m".to_owned(),
            (_, 0) => String::new(),
            (_, 3) => "k".to_owned(),
            (_, 6) => "M".to_owned(),
            (_, 9) => "G".to_owned(),
            (_, 12) => "T".to_owned(),
            (_, 15) => "P".to_owned(),
            _ => "E".to_owned(),
        };
        format!("{sign}{mantissa}{suffix}")
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.nanos.cmp(&other.nanos))
    }
}

/// The canonical, milli-rounded form of a quantity string, or `None` if it does not parse.
pub(crate) fn normalize(input: &str) -> Option<String> {
    Quantity::parse(input).map(|q| q.round_up_to_milli().canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_match_kubernetes() {
        for (input, want) in [
            ("1", "1"),
            ("1000m", "1"),
            ("0.5", "500m"),
            ("100m", "100m"),
            ("1500m", "1500m"),
            ("1000", "1k"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("128974848", "128974848"),
            ("129e6", "129e6"),
            ("123Mi", "123Mi"),
            ("0", "0"),
            ("1n", "1m"),
            ("-1", "-1"),
        ] {
            assert_eq!(normalize(input).as_deref(), Some(want), "{input}");
        }
        for bad in ["", "abc", "1.2.3", "1Zi", "--1", "1e999"] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn comparisons_are_exact() {
        let q = |s| Quantity::parse(s).expect("parses");
        assert!(q("2") > q("1"));
        assert_eq!(q("1Gi").nanos, q("1073741824").nanos);
        assert_eq!(q("100m").nanos, q("0.1").nanos);
        assert!(q("1001m") > q("1"));
    }
}
