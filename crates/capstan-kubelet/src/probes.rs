//! Liveness, readiness and startup probes: exec (through CRI), httpGet and tcpSocket against the pod IP,
//! with the Kubernetes timing fields (initialDelaySeconds, periodSeconds, timeoutSeconds,
//! successThreshold, failureThreshold).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Kubelet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// Consecutive results of one probe on one container instance.
#[derive(Debug)]
pub(crate) struct ProbeState {
    successes: i32,
    failures: i32,
    pub(crate) succeeded_once: bool,
    /// The current verdict for readiness (false until `successThreshold` successes).
    ready: bool,
    last_run: Option<Instant>,
}

impl ProbeState {
    pub(crate) fn new() -> Self {
        Self {
            successes: 0,
            failures: 0,
            succeeded_once: false,
            ready: false,
            last_run: None,
        }
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::new();
    }

    fn record(&mut self, ok: bool, probe: &Probe) {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.ready = true;
                self.succeeded_once = true;
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                self.ready = false;
            }
        }
    }

    pub(crate) fn failed_past_threshold(&self, probe: &Probe) -> bool {
        self.failures >= probe.failure_threshold.unwrap_or(3).max(1)
    }

    pub(crate) fn ready(&self, _probe: &Probe) -> bool {
        self.ready
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs the probe when it is due; `None` when it was not due, else the outcome (error = why it failed).
pub(crate) async fn maybe_run(
    k: &Kubelet,
    probe: &Probe,
    st: &mut ProbeState,
    started_at_nanos: i64,
    container_id: &str,
    pod_ip: &str,
    c: &Container,
) -> Option<Result<(), String>> {
    let delay =
        Duration::from_secs(u64::try_from(probe.initial_delay_seconds.unwrap_or(0)).unwrap_or(0));
    let running_for = Duration::from_nanos(
        u64::try_from(now_nanos().saturating_sub(started_at_nanos)).unwrap_or(0),
    );
    if running_for < delay {
        return None;
    }
    let period =
        Duration::from_secs(u64::try_from(probe.period_seconds.unwrap_or(10).max(1)).unwrap_or(10));
    if st.last_run.is_some_and(|t| t.elapsed() < period) {
        return None;
    }
    st.last_run = Some(Instant::now());
    let timeout =
        Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1));
    let outcome = run_once(k, probe, timeout, container_id, pod_ip, c).await;
    st.record(outcome.is_ok(), probe);
    Some(outcome)
}

fn port_number(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("port {name:?} not found in the container's ports")),
    }
}

async fn run_once(
    k: &Kubelet,
    probe: &Probe,
    timeout: Duration,
    container_id: &str,
    pod_ip: &str,
    c: &Container,
) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        let secs = i64::try_from(timeout.as_secs()).unwrap_or(1);
        let resp = tokio::time::timeout(
            timeout + Duration::from_secs(1),
            k.cri.exec_sync(container_id, cmd, secs),
        )
        .await
        .map_err(|_| format!("command timed out after {}s", timeout.as_secs()))?
        .map_err(|e| e.to_string())?;
        if resp.exit_code == 0 {
            return Ok(());
        }
        let mut out = String::from_utf8_lossy(&resp.stdout).into_owned();
        out.push_str(&String::from_utf8_lossy(&resp.stderr));
        return Err(if out.trim().is_empty() {
            format!(
                "command {:?} exited with {}",
                exec.command.clone().unwrap_or_default(),
                resp.exit_code
            )
        } else {
            out.trim_end().to_string()
        });
    }
    if let Some(http) = &probe.http_get {
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let port = port_number(&http.port, c)?;
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        if http.scheme.as_deref() == Some("HTTPS") {
            return Err("HTTPS probes are not supported by this node".into());
        }
        let mut headers = String::new();
        for h in http.http_headers.iter().flatten() {
            headers.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
        let fut = async {
            let mut s = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| e.to_string())?;
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.32\r\nAccept: */*\r\n{headers}Connection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 1024];
            let mut got = 0;
            while got < 12 {
                let n = s.read(&mut buf[got..]).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            let line = String::from_utf8_lossy(&buf[..got]).to_string();
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or("malformed HTTP response")?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        };
        return tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| format!("Get \"http://{host}:{port}{path}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))?;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| pod_ip.to_string());
        let port = port_number(&tcp.port, c)?;
        return match tokio::time::timeout(
            timeout,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    Err("probe has no handler this node supports".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_readiness_and_failure() {
        let probe = Probe {
            success_threshold: Some(2),
            failure_threshold: Some(2),
            ..Default::default()
        };
        let mut st = ProbeState::new();
        st.record(true, &probe);
        assert!(!st.ready(&probe), "one success of two");
        st.record(true, &probe);
        assert!(st.ready(&probe));
        st.record(false, &probe);
        assert!(st.ready(&probe) && !st.failed_past_threshold(&probe));
        st.record(false, &probe);
        assert!(!st.ready(&probe) && st.failed_past_threshold(&probe));
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .expect("container");
        assert_eq!(
            port_number(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert!(port_number(&IntOrString::String("nope".into()), &c).is_err());
        assert_eq!(port_number(&IntOrString::Int(80), &c), Ok(80));
    }
}
