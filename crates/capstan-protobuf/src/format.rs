//! The JSON spellings of the Kubernetes time types: `metav1.Time` and `metav1.MicroTime` as
//! RFC 3339 UTC strings, `metav1.Duration` as Go's `time.Duration.String()`.

/// `2024-01-02T03:04:05Z`, or with `micros` `2024-01-02T03:04:05.123456Z`. `None` outside the
/// years 0000-9999, which Go's JSON encoder refuses as well.
pub(crate) fn rfc3339(seconds: i64, micros: Option<u32>) -> Option<String> {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let date = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}");
    Some(match micros {
        Some(us) => format!("{date}.{us:06}Z"),
        None => format!("{date}Z"),
    })
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // Both are small and positive by construction.
    (year, month as u32, day as u32)
}

/// Go's `time.Duration(nanos).String()`: `1h0m0s`, `1m30s`, `1.5s`, `250ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".to_owned();
    }
    if u < 1_000_000_000 {
        let (value, unit) = match u {
            0..1_000 => (u.to_string(), "ns"),
            1_000..1_000_000 => (fraction(u, 3), "µs"),
            _ => (fraction(u, 6), "ms"),
        };
        return format!("{sign}{value}{unit}");
    }
    let seconds = fraction(u % 60_000_000_000, 9);
    let minutes = u / 60_000_000_000;
    if minutes == 0 {
        return format!("{sign}{seconds}s");
    }
    let hours = minutes / 60;
    if hours == 0 {
        return format!("{sign}{minutes}m{seconds}s");
    }
    format!("{sign}{hours}h{}m{seconds}s", minutes % 60)
}

/// `v / 10^digits` with the fraction's trailing zeros (and a bare point) dropped.
fn fraction(v: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339_utc() {
        for (seconds, micros, want) in [
            (0, None, "1970-01-01T00:00:00Z"),
            (1_704_164_645, None, "2024-01-02T03:04:05Z"),
            (1_704_164_645, Some(123_456), "2024-01-02T03:04:05.123456Z"),
            (1_704_164_645, Some(5), "2024-01-02T03:04:05.000005Z"),
            (951_782_400, None, "2000-02-29T00:00:00Z"),
            (-1, None, "1969-12-31T23:59:59Z"),
            (253_402_300_799, None, "9999-12-31T23:59:59Z"),
            (-62_135_596_800, None, "0001-01-01T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(seconds, micros).as_deref(), Some(want), "{seconds}");
        }
        assert_eq!(rfc3339(253_402_300_800, None), None);
        assert_eq!(rfc3339(i64::MIN, None), None);
        assert_eq!(rfc3339(i64::MAX, None), None);
    }

    #[test]
    fn durations_format_as_go_does() {
        for (nanos, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (250_000_000, "250ms"),
            (1_500_000_000, "1.5s"),
            (30_000_000_000, "30s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_661_000_000_001, "1h1m1.000000001s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }
}
