//! Pure helpers: quantities, restart back-off, pod phase — the rules the kubelet applies when it turns
//! what the runtime reports into a PodStatus.

use std::time::Duration;

/// Parses a Kubernetes quantity ("250m", "64Mi", "1.5", "2G") into a plain number.
pub(crate) fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "u" => 1e-6,
        "n" => 1e-9,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// The crash-loop back-off: 10 s doubling to 5 min (the kubelet's), after the first restart which is
/// immediate. `restarts` = restarts so far.
pub(crate) fn restart_backoff(restarts: u32) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    let secs = 10u64.saturating_mul(1u64 << (restarts - 1).min(10));
    Duration::from_secs(secs.min(300))
}

/// Whether a container that exited with `exit_code` is restarted under `policy`.
pub(crate) fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// What one container looks like for the phase computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observed {
    /// Never started yet (no previous run).
    Waiting,
    Running,
    /// Exited with this code; `will_restart` when the policy restarts it.
    Exited {
        code: i32,
        will_restart: bool,
    },
}

/// The pod phase from its containers, as the kubelet's `getPhase` decides it (init containers done).
pub(crate) fn phase(policy: &str, containers: &[Observed]) -> &'static str {
    let mut waiting = 0;
    let mut running = 0;
    let mut failed = 0;
    let mut succeeded = 0;
    let mut restarting = 0;
    for c in containers {
        match c {
            Observed::Waiting => waiting += 1,
            Observed::Running => running += 1,
            Observed::Exited {
                will_restart: true, ..
            } => restarting += 1,
            Observed::Exited { code: 0, .. } => succeeded += 1,
            Observed::Exited { .. } => failed += 1,
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 || restarting > 0 {
        return "Running";
    }
    if containers.is_empty() {
        return "Pending";
    }
    match policy {
        "Always" => "Running",
        _ if failed > 0 => "Failed",
        _ => {
            let _ = succeeded;
            "Succeeded"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for (q, v) in [
            ("250m", 0.25),
            ("2", 2.0),
            ("64Mi", 67108864.0),
            ("1G", 1e9),
            ("1.5", 1.5),
            ("1e3", 1000.0),
        ] {
            assert_eq!(parse_quantity(q), Some(v), "{q}");
        }
        assert_eq!(parse_quantity("12x"), None);
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes() {
        let got: Vec<u64> = (0..8).map(|r| restart_backoff(r).as_secs()).collect();
        assert_eq!(got, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn phases_follow_the_restart_policy() {
        use Observed::*;
        let cases: &[(&str, &[Observed], &str)] = &[
            ("Always", &[Waiting], "Pending"),
            ("Always", &[Running, Waiting], "Pending"),
            ("Always", &[Running], "Running"),
            (
                "Never",
                &[Exited {
                    code: 0,
                    will_restart: false,
                }],
                "Succeeded",
            ),
            (
                "Never",
                &[
                    Exited {
                        code: 1,
                        will_restart: false,
                    },
                    Exited {
                        code: 0,
                        will_restart: false,
                    },
                ],
                "Failed",
            ),
            (
                "Never",
                &[
                    Running,
                    Exited {
                        code: 1,
                        will_restart: false,
                    },
                ],
                "Running",
            ),
            (
                "OnFailure",
                &[Exited {
                    code: 1,
                    will_restart: true,
                }],
                "Running",
            ),
            (
                "OnFailure",
                &[Exited {
                    code: 0,
                    will_restart: false,
                }],
                "Succeeded",
            ),
            (
                "Always",
                &[Exited {
                    code: 0,
                    will_restart: true,
                }],
                "Running",
            ),
        ];
        for (policy, cs, want) in cases {
            assert_eq!(phase(policy, cs), *want, "{policy} {cs:?}");
        }
        assert!(should_restart("Always", 0));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 2));
        assert!(!should_restart("Never", 2));
    }
}
