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

/// The arguments of a `/proc/<pid>/cmdline` text (NUL-separated, usually NUL-terminated).
fn split_cmdline(raw: &[u8]) -> Vec<String> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// One process: its id and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    pub(crate) pid: u32,
    pub(crate) args: Vec<String>,
}

/// Every process with a command line (kernel threads have none); processes that end while the list
/// is read are left out.
pub(crate) fn processes() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args = split_cmdline(&raw);
        if !args.is_empty() {
            out.push(Process { pid, args });
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// The root directory of `pid` (a container's root file system for a process in a container).
pub(crate) fn root_dir(pid: u32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/root")).ok()
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
    fn splits_command_lines() {
        let cases: [(&[u8], &[&str]); 4] = [
            (b"", &[]),
            (
                b"capstan\0server\0--data-dir\0/tmp/a b\0",
                &["capstan", "server", "--data-dir", "/tmp/a b"],
            ),
            (b"no-terminator", &["no-terminator"]),
            (b"a\0\0b\0", &["a", "", "b"]),
        ];
        for (raw, want) in cases {
            assert_eq!(split_cmdline(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn lists_this_process() {
        let me = std::process::id();
        let found = processes()
            .into_iter()
            .find(|p| p.pid == me)
            .expect("self listed");
        assert!(!found.args.is_empty());
        assert_eq!(root_dir(me), Some(std::path::PathBuf::from("/")));
    }

    #[test]
    fn reads_cpu_time_past_a_name_with_spaces() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 0 0";
        assert_eq!(stat_cpu(stat), Some(Duration::from_secs(3)));
        assert_eq!(stat_cpu("42 (x) S 1"), None);
    }
}
