//! Cron schedules as CronJobs write them (the standard 5-field syntax of `robfig/cron`, which
//! Kubernetes uses): `minute hour day-of-month month day-of-week`, each field `*`, `?`, a value, a
//! range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a comma list of those; month and weekday names
//! (`JAN`, `MON`); weekdays 0-6 from Sunday (7 is Sunday too); and the descriptors `@yearly`
//! (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly`. When both day
//! fields are restricted a day matching either one matches, as in Vixie cron.
//!
//! Times are evaluated in a time zone (CronJob `spec.timeZone`, else the controller's local zone,
//! UTC here): [`Schedule::next_after`] walks civil time field by field.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Day-of-month or day-of-week was `*`/`?`: then both must match, else either.
    any_day_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Parses one field within `min..=max`; returns the bits and whether it was a star.
fn field(text: &str, min: u32, max: u32, names: &[&str]) -> Result<(u64, bool), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            let offset = if names.len() == 12 { 1 } else { 0 };
            return u32::try_from(i)
                .map(|i| i + offset)
                .map_err(|e| e.to_string());
        }
        s.parse::<u32>()
            .map_err(|_| format!("failed to parse int from {s}"))
    };
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {s}"))?,
                ),
            ),
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            star = step.is_none() || step == Some(1);
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step.is_some() { max } else { v })
        };
        // Sunday may be written 7.
        let (lo, hi) = if max == 6 && hi == 7 {
            if lo == 7 { (0, 0) } else { (lo, 6) }
        } else {
            (lo, hi)
        };
        if lo < min || hi > max {
            return Err(format!("end of range ({hi}) above maximum ({max}): {part}"));
        }
        if lo > hi {
            return Err(format!(
                "beginning of range ({lo}) beyond end of range ({hi}): {part}"
            ));
        }
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a schedule; the error says what is wrong, as robfig/cron's would.
    pub(crate) fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        let expanded = match spec.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {spec}")),
            _ => spec,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                fields.len()
            ));
        }
        let (minutes, _) = field(fields[0], 0, 59, &[])?;
        let (hours, _) = field(fields[1], 0, 23, &[])?;
        let (days, dom_star) = field(fields[2], 1, 31, &[])?;
        let (months, _) = field(fields[3], 1, 12, &MONTHS)?;
        let (weekdays, dow_star) = field(fields[4], 0, 6, &WEEKDAYS)?;
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day_star: dom_star || dow_star,
        })
    }

    fn has(bits: u64, v: i8) -> bool {
        u8::try_from(v).is_ok_and(|v| v < 64 && bits & (1 << v) != 0)
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = Self::has(self.days, date.day());
        let dow = Self::has(self.weekdays, date.weekday().to_sunday_zero_offset());
        if self.any_day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time strictly after `after` that the schedule matches in `tz`, searching at most
    /// five years ahead.
    pub(crate) fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(after);
        // The next whole minute.
        let mut t = DateTime::new(
            start.year(),
            start.month(),
            start.day(),
            start.hour(),
            start.minute(),
            0,
            0,
        )
        .ok()?
        .checked_add(1.minute())
        .ok()?;
        let limit = t.year() + 5;
        while t.year() <= limit {
            if !Self::has(self.months, t.month()) {
                t = t
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .checked_add(1.day())
                    .ok()?
                    .to_datetime(jiff::civil::time(0, 0, 0, 0));
                continue;
            }
            if !Self::has(self.hours, t.hour()) {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !Self::has(self.minutes, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let at = tz.to_timestamp(t).ok()?;
            if at > after {
                return Some(at);
            }
            // A repeated hour (DST fall back) or a skipped one: move on.
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .expect("schedule")
            .next_after(at(after), &TimeZone::UTC)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn next_times() {
        let cases = [
            ("* * * * *", "2025-03-01T10:00:30Z", "2025-03-01T10:01:00Z"),
            ("* * * * *", "2025-03-01T10:00:00Z", "2025-03-01T10:01:00Z"),
            (
                "*/15 * * * *",
                "2025-03-01T10:01:00Z",
                "2025-03-01T10:15:00Z",
            ),
            ("5 4 * * *", "2025-03-01T10:00:00Z", "2025-03-02T04:05:00Z"),
            ("0 0 1 1 *", "2025-03-01T10:00:00Z", "2026-01-01T00:00:00Z"),
            ("@hourly", "2025-03-01T10:59:59Z", "2025-03-01T11:00:00Z"),
            ("@daily", "2025-12-31T23:00:00Z", "2026-01-01T00:00:00Z"),
            ("@weekly", "2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"),
            ("@monthly", "2025-01-31T12:00:00Z", "2025-02-01T00:00:00Z"),
            (
                "0 9 * * MON-FRI",
                "2025-03-01T10:00:00Z",
                "2025-03-03T09:00:00Z",
            ),
            ("0 9 * * 7", "2025-03-01T10:00:00Z", "2025-03-02T09:00:00Z"),
            (
                "30 8 29 feb *",
                "2025-01-01T00:00:00Z",
                "2028-02-29T08:30:00Z",
            ),
            // Both day fields restricted: either matches (the 13th, or a Friday).
            ("0 0 13 * 5", "2025-03-01T00:00:00Z", "2025-03-07T00:00:00Z"),
            (
                "0 0 1,15 * *",
                "2025-03-02T00:00:00Z",
                "2025-03-15T00:00:00Z",
            ),
            (
                "10-20/5 * * * *",
                "2025-03-01T10:16:00Z",
                "2025-03-01T10:20:00Z",
            ),
            ("0 0 31 2 *", "2025-03-01T00:00:00Z", ""),
        ];
        for (spec, after, want) in cases {
            assert_eq!(next(spec, after), want, "{spec} after {after}");
        }
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let tz = TimeZone::get("America/New_York").expect("zone database");
        let s = Schedule::parse("0 9 * * *").expect("schedule");
        // 09:00 EST is 14:00 UTC.
        assert_eq!(
            s.next_after(at("2025-01-10T12:00:00Z"), &tz)
                .map(|t| t.to_string()),
            Some("2025-01-10T14:00:00Z".into())
        );
    }

    #[test]
    fn invalid_schedules_are_rejected() {
        for spec in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "@often",
            "x * * * *",
        ] {
            assert!(Schedule::parse(spec).is_err(), "{spec:?}");
        }
    }
}
