//! Resource usage of the node and of its running containers, served as the kubelet's Summary API
//! (`GET /stats/summary`, the subset `metrics.k8s.io` needs): node CPU from `/proc/stat`, node memory
//! from `/proc/meminfo`, containers from CRI `ListContainerStats` (containerd reads their cgroups).
//!
//! CPU usage is a rate, so it needs two readings of the cumulative counters: a sampler keeps the
//! readings of the last [`RESOLUTION`] ticks, and a request compares a fresh reading with the newest
//! kept one that is at least [`MIN_WINDOW`] old. The window that rate covers is reported per CPU
//! reading as `usageWindowNanoSeconds` (an addition to the Summary API's fields: `metrics.k8s.io`
//! reports a window and the Summary API has no field for it).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_cri::v1 as cri;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{Kubelet, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID};

/// How often the sampler keeps a reading (metrics-server's default resolution is 15 s, k3s's 10 s).
pub(crate) const RESOLUTION: Duration = Duration::from_secs(10);
/// The shortest window a CPU rate is computed over: shorter ones are mostly noise.
const MIN_WINDOW: Duration = Duration::from_secs(1);
/// Linux reports `/proc/stat` in `USER_HZ` ticks, 100 per second on every architecture Linux
/// supports (the value the kernel exports to user space, independent of `CONFIG_HZ`).
const NANOS_PER_TICK: u64 = 10_000_000;

/// Cumulative CPU time (ns) of one container at a moment (unix ns).
#[derive(Debug, Clone, Copy, PartialEq)]
struct CpuReading {
    at: i64,
    total: u64,
}

/// One reading of the node and its containers.
#[derive(Debug, Clone, Default)]
struct Reading {
    node: Option<CpuReading>,
    containers: HashMap<String, CpuReading>,
}

/// The sampler's kept readings, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    kept: Mutex<VecDeque<Reading>>,
}

fn unix_nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn rfc3339(nanos: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Busy CPU time of the machine in ns from `/proc/stat`'s first line: user, nice, system, irq and
/// softirq (idle, iowait and steal are time the machine's CPUs did not spend on its work).
pub(crate) fn busy_cpu_nanos(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6);
    Some(busy.saturating_mul(NANOS_PER_TICK))
}

/// A rate in nanocores between two cumulative readings, with its window; `None` when the window is
/// empty or the counter went backwards (a restarted container under the same id).
fn rate(before: CpuReading, after: CpuReading) -> Option<(u64, i64)> {
    let window = after.at - before.at;
    if window <= 0 || after.total < before.total {
        return None;
    }
    let used = u128::from(after.total - before.total);
    let cores = used * 1_000_000_000 / u128::try_from(window).ok()?;
    Some((u64::try_from(cores).unwrap_or(u64::MAX), window))
}

/// The newest kept reading that is at least [`MIN_WINDOW`] older than `now`, else the oldest one.
fn baseline(kept: &VecDeque<Reading>, now: i64) -> Option<&Reading> {
    let min = i64::try_from(MIN_WINDOW.as_nanos()).unwrap_or(i64::MAX);
    kept.iter()
        .rev()
        .find(|r| r.node.is_some_and(|n| now - n.at >= min))
        .or_else(|| kept.front())
}

fn cpu_json(now: CpuReading, before: Option<CpuReading>) -> Value {
    let mut cpu = json!({"time": rfc3339(now.at), "usageCoreNanoSeconds": now.total});
    if let Some((cores, window)) = before.and_then(|b| rate(b, now)) {
        cpu["usageNanoCores"] = json!(cores);
        cpu["usageWindowNanoSeconds"] = json!(window);
    }
    cpu
}

/// A running container's reading from CRI, with what names it.
#[derive(Debug, Clone)]
struct ContainerUsage {
    id: String,
    pod: (String, String, String),
    name: String,
    cpu: Option<CpuReading>,
    /// When the container was created (unix ns): its counter started at zero then.
    created_at: i64,
    memory_at: i64,
    working_set: Option<u64>,
}

impl Stats {
    /// Keeps a reading every [`RESOLUTION`] (the first one at once) until `shutdown`.
    pub(crate) async fn run(k: std::sync::Arc<Kubelet>, shutdown: CancellationToken) {
        loop {
            let (node, containers) = read(&k).await;
            k.stats.keep(Reading {
                node,
                containers: containers
                    .iter()
                    .filter_map(|c| Some((c.id.clone(), c.cpu?)))
                    .collect(),
            });
            tokio::select! {
                () = tokio::time::sleep(RESOLUTION) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn keep(&self, reading: Reading) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.push_back(reading);
            while kept.len() > 2 {
                kept.pop_front();
            }
        }
    }

    /// The Summary document for this moment.
    pub(crate) async fn summary(k: &Kubelet) -> Value {
        let (node, containers) = read(k).await;
        let base = k
            .stats
            .kept
            .lock()
            .ok()
            .and_then(|kept| baseline(&kept, node.map_or(0, |n| n.at)).cloned())
            .unwrap_or_default();
        summary_json(&k.config.node_name, node, base, containers)
    }
}

fn summary_json(
    node_name: &str,
    node_cpu: Option<CpuReading>,
    base: Reading,
    containers: Vec<ContainerUsage>,
) -> Value {
    let now = unix_nanos(SystemTime::now());
    let mut node = json!({"nodeName": node_name});
    if let Some(cpu) = node_cpu {
        node["cpu"] = cpu_json(cpu, base.node);
    }
    let total = crate::node::meminfo("MemTotal");
    let available = crate::node::meminfo("MemAvailable");
    let free = crate::node::meminfo("MemFree");
    if let (Some(total), Some(available)) = (total, available) {
        node["memory"] = json!({
            "time": rfc3339(now),
            "availableBytes": available,
            "usageBytes": total.saturating_sub(free.unwrap_or(available)),
            // What the kernel cannot reclaim: cadvisor's root working set, read from the system.
            "workingSetBytes": total.saturating_sub(available),
        });
    }
    // Pods in the order their containers came, each once.
    let mut pods: Vec<((String, String, String), Vec<Value>)> = Vec::new();
    for c in containers {
        let mut entry = json!({"name": c.name});
        if let Some(cpu) = c.cpu {
            // A container newer than the kept reading: its average since it was created.
            let since_created = (c.created_at > 0).then_some(CpuReading {
                at: c.created_at,
                total: 0,
            });
            let before = base.containers.get(&c.id).copied().or(since_created);
            entry["cpu"] = cpu_json(cpu, before);
        }
        if let Some(ws) = c.working_set {
            entry["memory"] = json!({"time": rfc3339(c.memory_at), "workingSetBytes": ws});
        }
        match pods.iter_mut().find(|(p, _)| *p == c.pod) {
            Some((_, list)) => list.push(entry),
            None => pods.push((c.pod, vec![entry])),
        }
    }
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|((namespace, name, uid), containers)| {
            json!({"podRef": {"name": name, "namespace": namespace, "uid": uid}, "containers": containers})
        })
        .collect();
    json!({"node": node, "pods": pods})
}

/// Reads the node's CPU counter and the running containers' usage now.
async fn read(k: &Kubelet) -> (Option<CpuReading>, Vec<ContainerUsage>) {
    let containers = container_usage(k).await.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "container stats unavailable");
        Vec::new()
    });
    let at = unix_nanos(SystemTime::now());
    let node = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| busy_cpu_nanos(&s))
        .map(|total| CpuReading { at, total });
    (node, containers)
}

async fn container_usage(k: &Kubelet) -> Result<Vec<ContainerUsage>, tonic::Status> {
    let mut runtime = k.cri.runtime.clone();
    let running: HashMap<String, i64> = runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers
        .into_iter()
        .map(|c| (c.id, c.created_at))
        .collect();
    let stats = runtime
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await?
        .into_inner()
        .stats;
    Ok(stats
        .into_iter()
        .filter_map(|s| {
            let attributes = s.attributes?;
            let created_at = *running.get(&attributes.id)?;
            let label = |key: &str| attributes.labels.get(key).cloned().unwrap_or_default();
            let name = attributes
                .labels
                .get(LABEL_CONTAINER_NAME)
                .cloned()
                .or_else(|| attributes.metadata.as_ref().map(|m| m.name.clone()))?;
            let pod = (
                label(LABEL_POD_NAMESPACE),
                label(LABEL_POD_NAME),
                label(LABEL_POD_UID),
            );
            if pod.1.is_empty() {
                return None;
            }
            let cpu = s.cpu.and_then(|cpu| {
                Some(CpuReading {
                    at: cpu.timestamp,
                    total: cpu.usage_core_nano_seconds?.value,
                })
            });
            let (memory_at, working_set) = s
                .memory
                .map(|m| (m.timestamp, m.working_set_bytes.map(|v| v.value)))
                .unwrap_or((0, None));
            Some(ContainerUsage {
                id: attributes.id,
                pod,
                name,
                cpu,
                created_at,
                memory_at,
                working_set,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_leaves_out_idle_iowait_and_steal() {
        let stat = "cpu  100 5 50 1000 20 3 2 70 0 0\ncpu0 50 2 25 500 10 1 1 35 0 0\n";
        // user 100 + nice 5 + system 50 + irq 3 + softirq 2 = 160 ticks of 10 ms.
        assert_eq!(busy_cpu_nanos(stat), Some(1_600_000_000));
        assert_eq!(busy_cpu_nanos("intr 1 2 3\n"), None);
        assert_eq!(busy_cpu_nanos("cpu  1 x 3\n"), None);
    }

    #[test]
    fn rates_need_time_and_a_growing_counter() {
        let before = CpuReading {
            at: 1_000_000_000,
            total: 500_000_000,
        };
        let after = CpuReading {
            at: 3_000_000_000,
            total: 1_500_000_000,
        };
        // 1 s of CPU over 2 s: half a core.
        assert_eq!(rate(before, after), Some((500_000_000, 2_000_000_000)));
        assert_eq!(rate(after, after), None);
        assert_eq!(rate(after, before), None);
        let restarted = CpuReading {
            at: 4_000_000_000,
            total: 10,
        };
        assert_eq!(rate(after, restarted), None);
    }

    fn reading(at_secs: i64) -> Reading {
        Reading {
            node: Some(CpuReading {
                at: at_secs * 1_000_000_000,
                total: 0,
            }),
            containers: HashMap::new(),
        }
    }

    #[test]
    fn the_baseline_is_the_newest_reading_old_enough() {
        let kept: VecDeque<Reading> = [reading(10), reading(20)].into();
        let at = |r: Option<&Reading>| r.and_then(|r| r.node).map(|n| n.at / 1_000_000_000);
        assert_eq!(at(baseline(&kept, 25_000_000_000)), Some(20));
        // The newest is only 0.5 s old: the one before it gives a real window.
        assert_eq!(at(baseline(&kept, 20_500_000_000)), Some(10));
        // Nothing old enough (just started): the oldest, whatever its age.
        let young: VecDeque<Reading> = [reading(20)].into();
        assert_eq!(at(baseline(&young, 20_100_000_000)), Some(20));
        assert!(baseline(&VecDeque::new(), 1).is_none());
    }

    #[test]
    fn summary_groups_containers_by_pod_and_rates_their_cpu() {
        let pod = ("ns".to_owned(), "web".to_owned(), "u1".to_owned());
        let usage = |id: &str, name: &str, total: u64, ws: u64| ContainerUsage {
            id: id.to_owned(),
            pod: pod.clone(),
            name: name.to_owned(),
            cpu: Some(CpuReading {
                at: 12_000_000_000,
                total,
            }),
            created_at: 0,
            memory_at: 12_000_000_000,
            working_set: Some(ws),
        };
        let base = Reading {
            node: Some(CpuReading {
                at: 2_000_000_000,
                total: 1_000_000_000,
            }),
            containers: [(
                "c1".to_owned(),
                CpuReading {
                    at: 2_000_000_000,
                    total: 0,
                },
            )]
            .into(),
        };
        let node = Some(CpuReading {
            at: 12_000_000_000,
            total: 6_000_000_000,
        });
        let summary = summary_json(
            "n1",
            node,
            base,
            vec![
                usage("c1", "app", 250_000_000, 4096),
                usage("c2", "side", 7, 1),
                ContainerUsage {
                    created_at: 7_000_000_000,
                    ..usage("c3", "late", 1_000_000_000, 1)
                },
            ],
        );
        assert_eq!(summary["node"]["nodeName"], "n1");
        // 5 s of CPU in 10 s.
        assert_eq!(summary["node"]["cpu"]["usageNanoCores"], 500_000_000);
        assert_eq!(
            summary["node"]["cpu"]["usageWindowNanoSeconds"],
            10_000_000_000i64
        );
        let pods = summary["pods"].as_array().expect("pods");
        assert_eq!(pods.len(), 1);
        assert_eq!(
            pods[0]["podRef"],
            json!({"name": "web", "namespace": "ns", "uid": "u1"})
        );
        let containers = pods[0]["containers"].as_array().expect("containers");
        assert_eq!(containers[0]["name"], "app");
        assert_eq!(containers[0]["cpu"]["usageNanoCores"], 25_000_000);
        assert_eq!(containers[0]["memory"]["workingSetBytes"], 4096);
        // No earlier reading of c2 and no creation time: its cumulative time is there, its rate
        // is not.
        assert_eq!(containers[1]["cpu"]["usageCoreNanoSeconds"], 7);
        assert!(containers[1]["cpu"].get("usageNanoCores").is_none());
        // c3 started after the kept reading: 1 s of CPU in the 5 s since it was created.
        assert_eq!(containers[2]["cpu"]["usageNanoCores"], 200_000_000);
        assert_eq!(
            containers[2]["cpu"]["usageWindowNanoSeconds"],
            5_000_000_000i64
        );
    }
}
