//! Timestamps as Kubernetes writes them (RFC 3339) and the ages `kubectl get` prints
//! (`apimachinery/pkg/util/duration.HumanDuration`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
const SECONDS_PER_DAY: i64 = 86_400;
/// Seconds from 0001-01-01T00:00:00Z (Go's zero `time.Time`) to the Unix epoch.
const GO_ZERO_UNIX_SECONDS: i64 = -62_135_596_800;

/// An instant, in nanoseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Time(i128);

impl Time {
    pub(crate) fn from_system(time: SystemTime) -> Time {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Time(i128::try_from(after.as_nanos()).unwrap_or(i128::MAX)),
            Err(before) => Time(-i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX)),
        }
    }

    /// The timestamp in a JSON field: `None` when the field is absent, null, malformed or Go's zero
    /// time, all of which Kubernetes prints as unset.
    pub(crate) fn from_value(value: Option<&Value>) -> Option<Time> {
        value.and_then(Value::as_str).and_then(Time::parse)
    }

    /// Parses RFC 3339 (`2024-05-01T10:00:00Z`, `2024-05-01T10:00:00.123456+02:00`).
    pub(crate) fn parse(text: &str) -> Option<Time> {
        let b = text.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let digits = b.get(range)?;
            digits.iter().try_fold(0i64, |acc, &d| {
                d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
            })
        };
        let sep = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
        if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let mut i = 19;
        let mut nanos: i128 = 0;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + i128::from(b[i] - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return None;
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        let offset_seconds = match b.get(i..)? {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let h = num(i + 1..i + 3)?;
                let m = num(i + 4..i + 6)?;
                if h > 23 || m > 59 {
                    return None;
                }
                let offset = h * 3600 + m * 60;
                if *sign == b'-' { -offset } else { offset }
            }
            _ => return None,
        };
        let seconds = days_from_civil(year, month, day) * SECONDS_PER_DAY
            + hour * 3600
            + minute * 60
            + second
            - offset_seconds;
        if seconds == GO_ZERO_UNIX_SECONDS && nanos == 0 {
            return None;
        }
        Some(Time(i128::from(seconds) * NANOS_PER_SECOND + nanos))
    }

    /// `2006-01-02T15:04:05Z`: Go's `time.RFC3339` layout of the UTC time, whole seconds.
    pub(crate) fn rfc3339_utc(self) -> String {
        let seconds = i64::try_from(self.0.div_euclid(NANOS_PER_SECOND)).unwrap_or(0);
        let (days, secs_of_day) = (
            seconds.div_euclid(SECONDS_PER_DAY),
            seconds.rem_euclid(SECONDS_PER_DAY),
        );
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            secs_of_day / 3600,
            secs_of_day % 3600 / 60,
            secs_of_day % 60
        )
    }

    /// Nanoseconds from `earlier` to `self` (negative if `earlier` is later).
    pub(crate) fn since(self, earlier: Time) -> i128 {
        self.0.saturating_sub(earlier.0)
    }
}

/// What Go's zero `metav1.Time` formats to: the `Created At` of an object without a creation time.
pub(crate) const ZERO_RFC3339: &str = "0001-01-01T00:00:00Z";

/// The age of a timestamp as kubectl prints it: `<unknown>` when unset.
pub(crate) fn age(timestamp: Option<Time>, now: Time) -> String {
    match timestamp {
        Some(t) => human_duration(now.since(t)),
        None => "<unknown>".to_owned(),
    }
}

/// A succinct duration with about two significant figures, by the rules of
/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`: seconds up to 2 minutes, then minutes
/// and seconds up to 10 minutes, minutes up to 3 hours, hours and minutes up to 8 hours, hours up
/// to 2 days, days and hours up to 8 days, days up to 2 years, years and days up to 8 years, then
/// years. Up to a second in the future reads as `0s` (clock skew); further is `<invalid>`.
pub(crate) fn human_duration(nanos: i128) -> String {
    let seconds = nanos / NANOS_PER_SECOND;
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = NANOS_PER_SECOND;

    #[test]
    fn human_duration_follows_kubernetes_thresholds() {
        let minute = 60 * S;
        let hour = 60 * minute;
        let day = 24 * hour;
        let cases: &[(i128, &str)] = &[
            (-3 * S, "<invalid>"),
            (-2 * S, "<invalid>"),
            (-S - S / 2, "0s"),
            (-S, "0s"),
            (-S / 2, "0s"),
            (0, "0s"),
            (S - 1, "0s"),
            (5 * S, "5s"),
            (59 * S, "59s"),
            (60 * S, "60s"),
            (119 * S, "119s"),
            (2 * minute, "2m"),
            (3 * minute + 2 * S, "3m2s"),
            (9 * minute + 59 * S, "9m59s"),
            (10 * minute, "10m"),
            (10 * minute + 30 * S, "10m"),
            (179 * minute, "179m"),
            (3 * hour, "3h"),
            (4 * hour, "4h"),
            (4 * hour + 5 * minute, "4h5m"),
            (7 * hour + 59 * minute, "7h59m"),
            (8 * hour, "8h"),
            (47 * hour + 59 * minute, "47h"),
            (2 * day, "2d"),
            (2 * day + 3 * hour, "2d3h"),
            (7 * day + 23 * hour, "7d23h"),
            (8 * day, "8d"),
            (400 * day, "400d"),
            (729 * day, "729d"),
            (730 * day, "2y"),
            (800 * day, "2y70d"),
            (8 * 365 * day - day, "7y364d"),
            (8 * 365 * day, "8y"),
            (20 * 365 * day + 100 * day, "20y"),
        ];
        for (nanos, want) in cases {
            assert_eq!(human_duration(*nanos), *want, "for {nanos}ns");
        }
    }

    #[test]
    fn parses_rfc3339_forms_kubernetes_writes() {
        let base = Time::parse("2024-05-01T10:00:00Z").expect("valid");
        assert_eq!(base, Time(1_714_557_600 * S));
        let micro = Time::parse("2024-05-01T10:00:00.250000Z").expect("valid");
        assert_eq!(micro.since(base), S / 4);
        let offset = Time::parse("2024-05-01T12:00:00+02:00").expect("valid");
        assert_eq!(offset, base);
        let west = Time::parse("2024-05-01T05:30:00-04:30").expect("valid");
        assert_eq!(west, base);
        let long_fraction = Time::parse("2024-05-01T10:00:00.1234567891Z").expect("valid");
        assert_eq!(long_fraction.since(base), 123_456_789);
        assert_eq!(
            Time::parse("2024-02-29T00:00:00Z")
                .map(Time::rfc3339_utc)
                .as_deref(),
            Some("2024-02-29T00:00:00Z")
        );
    }

    #[test]
    fn rejects_malformed_and_zero_timestamps() {
        for text in [
            "",
            "2024-05-01",
            "2024-05-01 10:00:00Z",
            "2024-13-01T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:00:60Z",
            "2024-05-01T10:00:00",
            "2024-05-01T10:00:00.Z",
            "2024-05-01T10:00:00+0200",
            "2024-05-01T10:00:00Zjunk",
            "２024-05-01T10:00:00Z",
            "0001-01-01T00:00:00Z",
        ] {
            assert_eq!(Time::parse(text), None, "{text:?}");
        }
        assert_eq!(Time::from_value(Some(&Value::Null)), None);
        assert_eq!(Time::from_value(Some(&Value::from(5))), None);
    }

    #[test]
    fn formats_utc_like_go() {
        for text in [
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2000-02-29T23:59:59Z",
            "0001-01-01T00:00:01Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert_eq!(
                Time::parse(text).map(Time::rfc3339_utc).as_deref(),
                Some(text)
            );
        }
        let fractional = Time::parse("2024-05-01T12:00:00.9+02:00").expect("valid");
        assert_eq!(fractional.rfc3339_utc(), "2024-05-01T10:00:00Z");
    }

    #[test]
    fn age_of_unset_timestamp_is_unknown() {
        let now = Time::parse("2024-05-01T10:00:00Z").expect("valid");
        assert_eq!(age(None, now), "<unknown>");
        assert_eq!(age(Time::parse("2024-05-01T09:55:00Z"), now), "5m");
        assert_eq!(age(Time::parse("2024-05-01T10:00:05Z"), now), "<invalid>");
    }
}
