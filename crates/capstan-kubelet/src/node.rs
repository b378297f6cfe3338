//! The Node object: registration with the host's capacity and identity, then heartbeats — the Lease in
//! `kube-node-lease` and NodeStatus (conditions from the runtime and the host's pressure) every 10 s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::{Kubelet, KubeletError};

/// How often the Lease is renewed and the status posted (the kubelet's `nodeStatusUpdateFrequency`).
const HEARTBEAT: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;
/// The version this kubelet reports (it speaks the 1.32 API).
pub(crate) const KUBELET_VERSION: &str = "v1.32.0+capstan";

pub(crate) fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `MemTotal`/`MemAvailable` etc. from /proc/meminfo, in bytes.
pub(crate) fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// Total and available bytes of the filesystem holding `path` (via `df`, to stay free of unsafe code).
fn disk(path: &std::path::Path) -> Option<(u64, u64)> {
    let out = std::process::Command::new("df")
        .args(["-Pk"])
        .arg(path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let cols: Vec<&str> = line.split_whitespace().collect();
    let total: u64 = cols.get(1)?.parse().ok()?;
    let avail: u64 = cols.get(3)?.parse().ok()?;
    Some((total * 1024, avail * 1024))
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn capacity(k: &Kubelet) -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut cap = BTreeMap::new();
    cap.insert("cpu".into(), Quantity(cpus.to_string()));
    if let Some(mem) = meminfo("MemTotal") {
        cap.insert("memory".into(), Quantity(format!("{}Ki", mem / 1024)));
    }
    cap.insert("pods".into(), Quantity(k.config.max_pods.to_string()));
    if let Some((total, _)) = disk(&k.config.data_dir) {
        cap.insert(
            "ephemeral-storage".into(),
            Quantity(format!("{}Ki", total / 1024)),
        );
    }
    cap.insert("hugepages-2Mi".into(), Quantity("0".into()));
    cap
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str, now: &Time) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// Conditions as the kubelet words them. Pressure conditions are "True" when under pressure.
async fn conditions(k: &Kubelet, previous: Option<&NodeStatus>) -> Vec<NodeCondition> {
    let now = now();
    let mem_avail = meminfo("MemAvailable").unwrap_or(u64::MAX);
    let mem_pressure = mem_avail < 100 * 1024 * 1024;
    let disk_pressure = disk(&k.config.data_dir).is_some_and(|(total, avail)| avail * 10 < total);
    let pid_max: u64 = read_trim("/proc/sys/kernel/pid_max")
        .parse()
        .unwrap_or(32768);
    let pids = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
            })
            .count() as u64
        })
        .unwrap_or(0);
    let pid_pressure = pids * 10 > pid_max * 9;
    let ready = runtime_ready(k).await;
    let mut conds = vec![
        if mem_pressure {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
                &now,
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                &now,
            )
        },
        if disk_pressure {
            condition(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
                &now,
            )
        } else {
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                &now,
            )
        },
        if pid_pressure {
            condition(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
                &now,
            )
        } else {
            condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                &now,
            )
        },
        match &ready {
            Ok(()) => condition(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
                &now,
            ),
            Err(message) => condition("Ready", false, "KubeletNotReady", message, &now),
        },
    ];
    // Keep transition times of conditions whose status did not change.
    if let Some(prev) = previous.and_then(|s| s.conditions.as_ref()) {
        for c in &mut conds {
            if let Some(p) = prev.iter().find(|p| p.type_ == c.type_)
                && p.status == c.status
                && p.last_transition_time.is_some()
            {
                c.last_transition_time = p.last_transition_time.clone();
            }
        }
    }
    conds
}

/// Ready when the runtime reports RuntimeReady and NetworkReady (the CNI config is loaded).
async fn runtime_ready(k: &Kubelet) -> Result<(), String> {
    let status = k
        .cri
        .runtime
        .clone()
        .status(k8s_cri::v1::StatusRequest { verbose: false })
        .await
        .map_err(|e| format!("container runtime is down: {}", e.message()))?
        .into_inner();
    let conds = status.status.map(|s| s.conditions).unwrap_or_default();
    let mut problems = Vec::new();
    for c in &conds {
        if !c.status {
            problems.push(format!(
                "{}=false reason:{} message:{}",
                c.r#type, c.reason, c.message
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else if conds
        .iter()
        .any(|c| c.r#type == "NetworkReady" && !c.status)
    {
        Err(format!(
            "container runtime network not ready: {}",
            problems.join(", ")
        ))
    } else {
        Err(format!(
            "container runtime not ready: {}",
            problems.join(", ")
        ))
    }
}

fn status(k: &Kubelet, port: u16, runtime_version: &str) -> NodeStatus {
    let cap = capacity(k);
    let hostname = read_trim("/proc/sys/kernel/hostname");
    NodeStatus {
        capacity: Some(cap.clone()),
        allocatable: Some(cap),
        addresses: Some(
            [
                Some(("InternalIP", k.config.node_ip.to_string())),
                k.config
                    .node_external_ip
                    .map(|ip| ("ExternalIP", ip.to_string())),
                Some((
                    "Hostname",
                    if hostname.is_empty() {
                        k.config.node_name.clone()
                    } else {
                        hostname
                    },
                )),
            ]
            .into_iter()
            .flatten()
            .map(|(type_, address)| NodeAddress {
                type_: type_.into(),
                address,
            })
            .collect(),
        ),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: arch().into(),
            boot_id: read_trim("/proc/sys/kernel/random/boot_id"),
            container_runtime_version: runtime_version.into(),
            kernel_version: read_trim("/proc/sys/kernel/osrelease"),
            kube_proxy_version: KUBELET_VERSION.into(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: read_trim("/etc/machine-id"),
            operating_system: "linux".into(),
            os_image: os_image(),
            system_uuid: read_trim("/sys/class/dmi/id/product_uuid"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the Node, or refreshes the status of an existing one (a restarted agent).
pub(crate) async fn register(
    k: &Kubelet,
    port: u16,
    runtime_version: &str,
) -> Result<(), KubeletError> {
    let api: Api<Node> = Api::all(k.client.clone());
    let name = &k.config.node_name;
    let mut st = status(k, port, runtime_version);
    st.conditions = Some(conditions(k, None).await);
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let annotations: BTreeMap<String, String> = [(
        crate::LOCAL_STORAGE_ANNOTATION.to_string(),
        k.config.storage_dir().display().to_string(),
    )]
    .into();
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            ..Default::default()
        },
        spec: None,
        status: Some(st.clone()),
    };
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => tracing::info!(node = %name, "registered the node"),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    serde_json::json!({"metadata": {"labels": labels, "annotations": annotations}}),
                ),
            )
            .await?;
            tracing::info!(node = %name, "node already registered");
        }
        Err(e) => return Err(e.into()),
    }
    // Status is a subresource: the create may have dropped it.
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": st })),
    )
    .await?;
    Ok(())
}

/// Waits until the node IPAM controller gives this node a podCIDR.
pub(crate) async fn wait_pod_cidr(
    k: &Kubelet,
    shutdown: &CancellationToken,
) -> Result<String, KubeletError> {
    let api: Api<Node> = Api::all(k.client.clone());
    let mut logged = false;
    loop {
        match api.get(&k.config.node_name).await {
            Ok(node) => {
                if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr) {
                    return Ok(cidr);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read my node"),
        }
        if !logged {
            tracing::info!("waiting for a podCIDR on this node");
            logged = true;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            () = shutdown.cancelled() => return Err(KubeletError::Invalid("shut down".into())),
        }
    }
}

/// Renews the Lease and posts NodeStatus every 10 s until shutdown.
pub(crate) async fn heartbeat(
    k: Arc<Kubelet>,
    port: u16,
    runtime_version: String,
    shutdown: CancellationToken,
) {
    let mut last_ready: Option<bool> = None;
    loop {
        if let Err(e) = renew_lease(&k).await {
            tracing::warn!(error = %e, "cannot renew the node lease");
        }
        match post_status(&k, port, &runtime_version).await {
            Ok(ready) => {
                // Until the node is Ready, report quickly: the first Ready is what users wait for.
                last_ready = Some(ready);
            }
            Err(e) => tracing::warn!(error = %e, "cannot post node status"),
        }
        let wait = if last_ready == Some(true) {
            HEARTBEAT
        } else {
            Duration::from_millis(250)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn post_status(k: &Kubelet, port: u16, runtime_version: &str) -> Result<bool, KubeletError> {
    let api: Api<Node> = Api::all(k.client.clone());
    let current = api.get_status(&k.config.node_name).await?;
    let mut st = status(k, port, runtime_version);
    let conds = conditions(k, current.status.as_ref()).await;
    let ready = conds
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    st.conditions = Some(conds);
    api.patch_status(
        &k.config.node_name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": st })),
    )
    .await?;
    Ok(ready)
}

async fn renew_lease(k: &Kubelet) -> Result<(), KubeletError> {
    let api: Api<Lease> = Api::namespaced(k.client.clone(), "kube-node-lease");
    let name = &k.config.node_name;
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    match api.get_opt(name).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(now);
            spec.holder_identity = Some(name.clone());
            spec.lease_duration_seconds = Some(LEASE_SECONDS);
            api.replace(name, &PostParams::default(), &lease).await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.clone()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}
