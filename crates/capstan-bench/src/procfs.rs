//! What `/proc` says about a process: resident memory and CPU time.

use std::time::Duration;

use anyhow::{Context, Result};

/// Clock ticks per second of `utime`/`stime` in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: u64 = 100;

/// `VmRSS` (or any other `kB` field) of a `/proc/<pid>/status` text, in bytes.
fn status_kb_field(status: &str, key: &str) -> Option<u64> {
    let rest = status.lines().find_map(|l| l.strip_prefix(key))?;
    let kb = rest.strip_prefix(':')?.trim().strip_suffix("kB")?.trim();
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Resident and peak resident memory of `pid`, in bytes.
pub(crate) fn rss(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let now = status_kb_field(&status, "VmRSS").context("no VmRSS")?;
    let peak = status_kb_field(&status, "VmHWM").context("no VmHWM")?;
    Ok((now, peak))
}

/// User plus system CPU time of a `/proc/<pid>/stat` text.
fn stat_cpu(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces; fields after its closing parenthesis are plain.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // `after` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// CPU time `pid` (`"self"` for this process) has used so far.
pub(crate) fn cpu(pid: &str) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    stat_cpu(&stat).context("malformed /proc stat")
}

/// Bytes as MiB, for printing.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_fields() {
        let status = "Name:\tcapstan\nVmHWM:\t   20480 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(status_kb_field(status, "VmRSS"), Some(12345 * 1024));
        assert_eq!(status_kb_field(status, "VmHWM"), Some(20480 * 1024));
        assert_eq!(status_kb_field(status, "VmSwap"), None);
        assert_eq!(status_kb_field("VmRSS:\tlots kB\n", "VmRSS"), None);
    }

    #[test]
    fn reads_cpu_time_past_a_name_with_spaces() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 0 0";
        assert_eq!(stat_cpu(stat), Some(Duration::from_secs(3)));
        assert_eq!(stat_cpu("42 (x) S 1"), None);
    }
}
