//! Pod workers: one task per pod bound to this node. Each reconciles the pod's spec against what the
//! runtime reports (sandbox, init containers in order, containers, restarts with back-off, probes) and
//! writes PodStatus when it changes. State is read back from CRI on every pass (labels on sandboxes and
//! containers), so a restarted agent adopts running pods without restarting them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, Event, EventSource, HostIP, ObjectReference, Pod,
    PodCondition, PodIP,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::probes::{self, ProbeKind, ProbeState};
use crate::status::{self, Observed};
use crate::{
    ANNOTATION_RESTART_COUNT, Kubelet, LABEL_CONTAINER_NAME, LABEL_POD_NAME, LABEL_POD_NAMESPACE,
    LABEL_POD_UID,
};

const ANNOTATION_HASH: &str = "io.kubernetes.container.hash";
/// How often a worker looks at its containers when nothing else wakes it.
const TICK: Duration = Duration::from_secs(1);

/// Runs the pod workers until shutdown.
pub(crate) async fn run(k: Arc<Kubelet>, shutdown: CancellationToken) {
    let api: Api<Pod> = Api::all(k.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", k.config.node_name));
    let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::default_backoff(watcher(
        api, config
    )));
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut init_seen: HashSet<String> = HashSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(30));
    let mut synced = false;
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = sweep.tick() => {
                if synced {
                    let known: HashSet<String> = workers.keys().cloned().collect();
                    let k = k.clone();
                    tokio::spawn(async move { remove_orphans(&k, &known).await });
                }
                continue;
            }
            () = shutdown.cancelled() => return,
        };
        let Some(event) = event else { return };
        match event {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                init_seen.insert(uid.clone());
                let pod = Arc::new(pod);
                workers.retain(|_, tx| !tx.is_closed());
                match workers.get(&uid) {
                    Some(tx) => {
                        let _ = tx.send(Some(pod));
                    }
                    None => {
                        let (tx, rx) = watch::channel(Some(pod));
                        workers.insert(uid.clone(), tx);
                        tokio::spawn(Worker::new(k.clone(), uid).run(rx, shutdown.clone()));
                    }
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.as_deref()
                    && let Some(tx) = workers.remove(uid)
                {
                    let _ = tx.send(None);
                }
            }
            Ok(watcher::Event::Init) => init_seen.clear(),
            Ok(watcher::Event::InitDone) => {
                // Pods that vanished while we were not watching.
                let gone: Vec<String> = workers
                    .keys()
                    .filter(|u| !init_seen.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    if let Some(tx) = workers.remove(&uid) {
                        let _ = tx.send(None);
                    }
                }
                if !synced {
                    synced = true;
                    let known: HashSet<String> = workers.keys().cloned().collect();
                    let k = k.clone();
                    tokio::spawn(async move { remove_orphans(&k, &known).await });
                }
            }
            Err(e) => tracing::warn!(error = %e, "pod watch failed; retrying"),
        }
    }
}

/// Removes sandboxes (and their containers) of pods this node no longer has.
async fn remove_orphans(k: &Kubelet, known: &HashSet<String>) {
    let Ok(sandboxes) = k.cri.sandboxes(None).await else {
        return;
    };
    for sb in sandboxes {
        let Some(uid) = sb.labels.get(LABEL_POD_UID) else {
            continue;
        };
        if known.contains(uid) {
            continue;
        }
        tracing::info!(sandbox = %sb.id, pod_uid = %uid, "removing an orphaned sandbox");
        if let Ok(containers) = k.cri.containers(&sb.id).await {
            for c in containers {
                let _ = k.cri.stop_container(&c.id, 0).await;
                let _ = k.cri.remove_container(&c.id).await;
            }
        }
        if let Err(e) = k.cri.remove_sandbox(&sb.id).await {
            tracing::warn!(error = %e, sandbox = %sb.id, "cannot remove orphaned sandbox");
        }
        crate::volumes::cleanup(k, uid);
    }
}

/// Why a container is not running yet, as the kubelet reports it.
#[derive(Debug, Clone)]
struct Waiting {
    reason: String,
    message: String,
}

#[derive(Debug, Default)]
struct Backoff {
    /// When the last failure (exit or pull error) was seen.
    since: Option<Instant>,
    delay: Duration,
    last_error: String,
}

#[derive(Debug)]
struct Worker {
    k: Arc<Kubelet>,
    uid: String,
    /// Per container: why it is waiting (pull errors, config errors, back-off).
    waiting: HashMap<String, Waiting>,
    pull_backoff: HashMap<String, Backoff>,
    probes: HashMap<(String, ProbeKind), ProbeState>,
    /// Container ids whose probe state belongs to that container instance.
    probe_owner: HashMap<String, String>,
    sandbox_error: Option<String>,
    start_time: Option<Time>,
    last_status: Option<serde_json::Value>,
    events: HashMap<String, Instant>,
    terminal: bool,
}

/// One instance of a container as CRI reports it.
#[derive(Debug, Clone)]
struct Instance {
    status: cri::ContainerStatus,
    attempt: u32,
}

impl Instance {
    fn state(&self) -> i32 {
        self.status.state
    }
    fn running(&self) -> bool {
        self.state() == cri::ContainerState::ContainerRunning as i32
    }
    fn exited(&self) -> bool {
        self.state() == cri::ContainerState::ContainerExited as i32
    }
    fn created(&self) -> bool {
        self.state() == cri::ContainerState::ContainerCreated as i32
    }
}

fn time_from_nanos(nanos: i64) -> Option<Time> {
    if nanos <= 0 {
        return None;
    }
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .ok()
        .map(Time)
}

fn restart_policy(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into())
}

/// A hash of what, when changed, makes the kubelet restart a container (its spec).
fn container_hash(c: &Container) -> String {
    let json = serde_json::to_vec(c).unwrap_or_default();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in json {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:x}")
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

impl Worker {
    fn new(k: Arc<Kubelet>, uid: String) -> Self {
        Self {
            k,
            uid,
            waiting: HashMap::new(),
            pull_backoff: HashMap::new(),
            probes: HashMap::new(),
            probe_owner: HashMap::new(),
            sandbox_error: None,
            start_time: None,
            last_status: None,
            events: HashMap::new(),
            terminal: false,
        }
    }

    async fn run(mut self, mut rx: watch::Receiver<Option<Arc<Pod>>>, shutdown: CancellationToken) {
        loop {
            let pod = rx.borrow_and_update().clone();
            let wait = match pod {
                None => {
                    // Gone from the API (force-deleted): stop everything now.
                    self.teardown(None, 1).await;
                    return;
                }
                Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                    let grace = pod
                        .metadata
                        .deletion_grace_period_seconds
                        .unwrap_or(30)
                        .max(0);
                    self.teardown(Some(&pod), grace).await;
                    self.finish_deletion(&pod).await;
                    Duration::from_secs(2)
                }
                Some(pod) => match self.sync(&pod).await {
                    Ok(wait) => wait,
                    Err(e) => {
                        tracing::warn!(pod = %pod_key(&pod), error = %e, "pod sync failed");
                        TICK
                    }
                },
            };
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Posts an event about the pod (or one of its containers), rate-limited per reason+message.
    async fn event(
        &mut self,
        pod: &Pod,
        field: Option<&str>,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        let key = format!("{reason}/{message}");
        if self
            .events
            .get(&key)
            .is_some_and(|t| t.elapsed() < Duration::from_secs(30))
        {
            return;
        }
        self.events.insert(key, Instant::now());
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let now = crate::node::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{nanos:x}")),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(name),
                namespace: Some(ns.clone()),
                uid: pod.metadata.uid.clone(),
                field_path: field.map(|c| format!("spec.containers{{{c}}}")),
                resource_version: pod.metadata.resource_version.clone(),
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(type_.into()),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(self.k.config.node_name.clone()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.k.config.node_name.clone()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            ..Default::default()
        };
        // Events are best effort and must not slow the pod down: post them in the background.
        let api = Api::<Event>::namespaced(self.k.client.clone(), &ns);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "cannot post event");
            }
        });
    }

    /// The ready sandbox of this pod, if any: (id, ip).
    async fn find_sandbox(&self) -> Result<Option<(String, String)>, crate::KubeletError> {
        let mut sandboxes = self.k.cri.sandboxes(Some(&self.uid)).await?;
        sandboxes.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        for sb in sandboxes {
            if sb.state == cri::PodSandboxState::SandboxReady as i32 {
                let ip = self
                    .k
                    .cri
                    .sandbox_status(&sb.id)
                    .await?
                    .and_then(|s| s.network)
                    .map(|n| n.ip)
                    .unwrap_or_default();
                return Ok(Some((sb.id, ip)));
            }
        }
        Ok(None)
    }

    async fn dns_config(&self, pod: &Pod) -> Option<cri::DnsConfig> {
        let spec = pod.spec.as_ref()?;
        let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
        let host_network = spec.host_network.unwrap_or(false);
        let cluster = match policy {
            "ClusterFirst" => !host_network,
            "ClusterFirstWithHostNet" => true,
            "None" => {
                let c = spec.dns_config.as_ref();
                return Some(cri::DnsConfig {
                    servers: c.and_then(|c| c.nameservers.clone()).unwrap_or_default(),
                    searches: c.and_then(|c| c.searches.clone()).unwrap_or_default(),
                    options: c
                        .and_then(|c| c.options.as_ref())
                        .map(|o| {
                            o.iter()
                                .map(|o| match &o.value {
                                    Some(v) => {
                                        format!("{}:{v}", o.name.clone().unwrap_or_default())
                                    }
                                    None => o.name.clone().unwrap_or_default(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            _ => false,
        };
        // Cluster DNS only when a cluster DNS Service exists; otherwise pods resolve like the host.
        let dns_service = cluster && self.k.services.kube_dns(&self.k.client).await;
        if cluster && dns_service {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let d = &self.k.config.cluster_domain;
            return Some(cri::DnsConfig {
                servers: vec![self.k.config.cluster_dns.to_string()],
                searches: vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()],
                options: vec!["ndots:5".into()],
            });
        }
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut dns = cri::DnsConfig::default();
        for line in resolv.lines() {
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("nameserver") => dns.servers.extend(parts.map(str::to_string)),
                Some("search") => dns.searches.extend(parts.map(str::to_string)),
                Some("options") => dns.options.extend(parts.map(str::to_string)),
                _ => {}
            }
        }
        Some(dns)
    }

    fn sandbox_config(
        &self,
        pod: &Pod,
        dns: Option<cri::DnsConfig>,
        attempt: u32,
    ) -> cri::PodSandboxConfig {
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let host_network = spec.host_network.unwrap_or(false);
        let mut ports = Vec::new();
        for c in &spec.containers {
            for p in c.ports.iter().flatten() {
                if let Some(host_port) = p.host_port.filter(|p| *p > 0) {
                    ports.push(cri::PortMapping {
                        protocol: match p.protocol.as_deref() {
                            Some("UDP") => cri::Protocol::Udp as i32,
                            Some("SCTP") => cri::Protocol::Sctp as i32,
                            _ => cri::Protocol::Tcp as i32,
                        },
                        container_port: p.container_port,
                        host_port,
                        host_ip: p.host_ip.clone().unwrap_or_default(),
                    });
                }
            }
        }
        // A host-network pod shares the node's UTS namespace: no hostname to set (runc refuses to
        // set one without a private UTS namespace); containerd writes the node's into /etc/hostname.
        let hostname = if host_network {
            String::new()
        } else {
            spec.hostname
                .clone()
                .unwrap_or_else(|| name.chars().take(63).collect())
        };
        let sc = spec.security_context.clone().unwrap_or_default();
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: self.uid.clone(),
                namespace: ns.clone(),
                attempt,
            }),
            hostname,
            log_directory: self.log_dir(pod).display().to_string(),
            dns_config: dns,
            port_mappings: ports,
            labels: [
                (LABEL_POD_UID.to_string(), self.uid.clone()),
                (LABEL_POD_NAME.to_string(), name),
                (LABEL_POD_NAMESPACE.to_string(), ns),
            ]
            .into(),
            annotations: Default::default(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: if host_network {
                            cri::NamespaceMode::Node
                        } else {
                            cri::NamespaceMode::Pod
                        } as i32,
                        pid: if spec.host_pid.unwrap_or(false) {
                            cri::NamespaceMode::Node
                        } else {
                            cri::NamespaceMode::Container
                        } as i32,
                        ipc: if spec.host_ipc.unwrap_or(false) {
                            cri::NamespaceMode::Node
                        } else {
                            cri::NamespaceMode::Pod
                        } as i32,
                        ..Default::default()
                    }),
                    run_as_user: sc.run_as_user.map(|v| cri::Int64Value { value: v }),
                    run_as_group: sc.run_as_group.map(|v| cri::Int64Value { value: v }),
                    supplemental_groups: sc.supplemental_groups.clone().unwrap_or_default(),
                    ..Default::default()
                }),
                sysctls: sc
                    .sysctls
                    .iter()
                    .flatten()
                    .map(|s| (s.name.clone(), s.value.clone()))
                    .collect(),
                ..Default::default()
            }),
            windows: None,
        }
    }

    fn log_dir(&self, pod: &Pod) -> std::path::PathBuf {
        self.k.config.logs_dir().join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
            self.uid
        ))
    }

    async fn ensure_sandbox(
        &mut self,
        pod: &Pod,
    ) -> Result<Option<(String, String)>, crate::KubeletError> {
        if let Some(found) = self.find_sandbox().await? {
            return Ok(Some(found));
        }
        // A sandbox that died (or none yet): a new one; the containers of an old one are restarted.
        let old = self.k.cri.sandboxes(Some(&self.uid)).await?;
        let attempt = old
            .iter()
            .filter_map(|s| s.metadata.as_ref())
            .map(|m| m.attempt + 1)
            .max()
            .unwrap_or(0);
        for sb in &old {
            let _ = self.k.cri.remove_sandbox(&sb.id).await;
        }
        let dns = self.dns_config(pod).await;
        let config = self.sandbox_config(pod, dns, attempt);
        let dir = self.log_dir(pod);
        std::fs::create_dir_all(&dir).map_err(|e| crate::KubeletError::io(&dir, e))?;
        match self
            .k
            .cri
            .runtime
            .clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        {
            Ok(resp) => {
                self.sandbox_error = None;
                let id = resp.into_inner().pod_sandbox_id;
                let ip = self
                    .k
                    .cri
                    .sandbox_status(&id)
                    .await?
                    .and_then(|s| s.network)
                    .map(|n| n.ip)
                    .unwrap_or_default();
                Ok(Some((id, ip)))
            }
            Err(status) => {
                let message = format!("Failed to create pod sandbox: {}", status.message());
                self.event(
                    pod,
                    None,
                    "Warning",
                    "FailedCreatePodSandBox",
                    message.clone(),
                )
                .await;
                self.sandbox_error = Some(message);
                Ok(None)
            }
        }
    }

    /// All container instances of the sandbox, grouped by container name, newest attempt last.
    async fn instances(
        &self,
        sandbox: &str,
    ) -> Result<HashMap<String, Vec<Instance>>, crate::KubeletError> {
        let mut out: HashMap<String, Vec<Instance>> = HashMap::new();
        for c in self.k.cri.containers(sandbox).await? {
            let Some(status) = self.k.cri.container_status(&c.id).await? else {
                continue;
            };
            let name = c
                .labels
                .get(LABEL_CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            let attempt = c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
            out.entry(name)
                .or_default()
                .push(Instance { status, attempt });
        }
        for list in out.values_mut() {
            list.sort_by_key(|i| (i.attempt, i.status.created_at));
        }
        Ok(out)
    }

    /// Pulls the image per `imagePullPolicy`; on failure records ErrImagePull/ImagePullBackOff.
    async fn ensure_image(&mut self, pod: &Pod, c: &Container) -> bool {
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            let tag = image.rsplit('/').next().unwrap_or_default();
            if !tag.contains(':') || tag.ends_with(":latest") {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        if let Some(b) = self.pull_backoff.get(&c.name)
            && b.since.is_some_and(|t| t.elapsed() < b.delay)
        {
            let last = b.last_error.clone();
            self.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "ImagePullBackOff".into(),
                    message: format!("Back-off pulling image \"{image}\": ErrImagePull: {last}"),
                },
            );
            let msg = format!("Back-off pulling image \"{image}\"");
            self.event(pod, Some(&c.name), "Normal", "BackOff", msg)
                .await;
            return false;
        }
        let present = self.k.cri.image_present(&image).await.unwrap_or(false);
        if policy == "Never" {
            if !present {
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "ErrImageNeverPull".into(),
                        message: format!(
                            "Container image \"{image}\" is not present with pull policy of Never"
                        ),
                    },
                );
            }
            return present;
        }
        if present && policy == "IfNotPresent" {
            self.event(
                pod,
                Some(&c.name),
                "Normal",
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            )
            .await;
            return true;
        }
        self.event(
            pod,
            Some(&c.name),
            "Normal",
            "Pulling",
            format!("Pulling image \"{image}\""),
        )
        .await;
        let started = Instant::now();
        match self.k.cri.pull(&image).await {
            Ok(_) => {
                self.pull_backoff.remove(&c.name);
                let ms = started.elapsed().as_millis();
                self.event(
                    pod,
                    Some(&c.name),
                    "Normal",
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {ms}ms ({ms}ms including waiting)"
                    ),
                )
                .await;
                true
            }
            Err(e) => {
                // The runtime's own words (they carry the registry's answer).
                let message = match &e {
                    crate::KubeletError::Cri(m) => m.clone(),
                    other => other.to_string(),
                };
                let b = self.pull_backoff.entry(c.name.clone()).or_default();
                b.delay = if b.delay.is_zero() {
                    Duration::from_secs(10)
                } else {
                    (b.delay * 2).min(Duration::from_secs(300))
                };
                b.since = Some(Instant::now());
                b.last_error = message.clone();
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "Failed",
                    format!("Failed to pull image \"{image}\": {message}"),
                )
                .await;
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "ErrImagePull".into(),
                        message,
                    },
                );
                false
            }
        }
    }

    /// Creates and starts one container instance.
    async fn start_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        sandbox: &(String, String),
        attempt: u32,
        volumes: &crate::volumes::VolumePaths,
        pid_target: Option<&str>,
    ) -> Result<(), crate::KubeletError> {
        if !self.ensure_image(pod, c).await {
            return Ok(());
        }
        let env = match crate::env::build(&self.k, pod, c).await {
            Ok(env) => env,
            Err(message) => {
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "Failed",
                    format!("Error: {message}"),
                )
                .await;
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message,
                    },
                );
                return Ok(());
            }
        };
        let mut mounts = Vec::new();
        for m in c.volume_mounts.iter().flatten() {
            let Some(host) = volumes.get(&m.name) else {
                let message = format!(
                    "cannot find volume \"{}\" to mount into container \"{}\"",
                    m.name, c.name
                );
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message,
                    },
                );
                return Ok(());
            };
            let mut host = host.clone();
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if sub.split('/').any(|s| s == "..") {
                    self.waiting.insert(
                        c.name.clone(),
                        Waiting {
                            reason: "CreateContainerConfigError".into(),
                            message: format!("invalid subPath {sub:?}"),
                        },
                    );
                    return Ok(());
                }
                host = host.join(sub);
                if !host.exists() {
                    let _ = std::fs::create_dir_all(&host);
                }
            }
            mounts.push(cri::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.display().to_string(),
                readonly: m.read_only.unwrap_or(false),
                ..Default::default()
            });
        }
        let vars: Vec<(String, String)> = env.clone();
        let expand = |v: &Vec<String>| {
            v.iter()
                .map(|s| crate::env::expand(s, &vars))
                .collect::<Vec<_>>()
        };
        let sc = c.security_context.clone().unwrap_or_default();
        let psc = pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.clone())
            .unwrap_or_default();
        let res = c.resources.clone().unwrap_or_default();
        let q = |m: Option<
            &std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >,
                 n: &str| {
            m.and_then(|m| m.get(n))
                .and_then(|q| status::parse_quantity(&q.0))
        };
        let cpu_limit = q(res.limits.as_ref(), "cpu");
        let cpu_request = q(res.requests.as_ref(), "cpu").or(cpu_limit);
        let mem_limit = q(res.limits.as_ref(), "memory");
        let resources = cri::LinuxContainerResources {
            cpu_period: if cpu_limit.is_some() { 100_000 } else { 0 },
            cpu_quota: cpu_limit
                .map(|c| ((c * 100_000.0) as i64).max(1000))
                .unwrap_or(0),
            cpu_shares: cpu_request
                .map(|c| ((c * 1024.0) as i64).max(2))
                .unwrap_or(2),
            memory_limit_in_bytes: mem_limit.map(|m| m as i64).unwrap_or(0),
            ..Default::default()
        };
        let caps = sc.capabilities.clone().unwrap_or_default();
        let share_pid = pod
            .spec
            .as_ref()
            .and_then(|s| s.share_process_namespace)
            .unwrap_or(false);
        let host_pid = pod.spec.as_ref().and_then(|s| s.host_pid).unwrap_or(false);
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: c.name.clone(),
                attempt,
            }),
            image: Some(crate::cri::image_spec(
                c.image.as_deref().unwrap_or_default(),
            )),
            command: c.command.as_ref().map(expand).unwrap_or_default(),
            args: c.args.as_ref().map(expand).unwrap_or_default(),
            working_dir: c.working_dir.clone().unwrap_or_default(),
            envs: env
                .into_iter()
                .map(|(key, value)| cri::KeyValue { key, value })
                .collect(),
            mounts,
            labels: [
                (LABEL_POD_UID.to_string(), self.uid.clone()),
                (
                    LABEL_POD_NAME.to_string(),
                    pod.metadata.name.clone().unwrap_or_default(),
                ),
                (
                    LABEL_POD_NAMESPACE.to_string(),
                    pod.metadata.namespace.clone().unwrap_or_default(),
                ),
                (LABEL_CONTAINER_NAME.to_string(), c.name.clone()),
            ]
            .into(),
            annotations: [
                (ANNOTATION_RESTART_COUNT.to_string(), attempt.to_string()),
                (ANNOTATION_HASH.to_string(), container_hash(c)),
            ]
            .into(),
            log_path: format!("{}/{attempt}.log", c.name),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(resources),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    capabilities: Some(cri::Capability {
                        add_capabilities: caps.add.clone().unwrap_or_default(),
                        drop_capabilities: caps.drop.clone().unwrap_or_default(),
                        ..Default::default()
                    }),
                    privileged: sc.privileged.unwrap_or(false),
                    namespace_options: Some(cri::NamespaceOption {
                        network: if host_network {
                            cri::NamespaceMode::Node
                        } else {
                            cri::NamespaceMode::Pod
                        } as i32,
                        pid: if host_pid {
                            cri::NamespaceMode::Node
                        } else if share_pid {
                            cri::NamespaceMode::Pod
                        } else if pid_target.is_some() {
                            // `kubectl debug --target`: see the target container's processes.
                            cri::NamespaceMode::Target
                        } else {
                            cri::NamespaceMode::Container
                        } as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        target_id: pid_target.unwrap_or_default().to_owned(),
                        ..Default::default()
                    }),
                    run_as_user: sc
                        .run_as_user
                        .or(psc.run_as_user)
                        .map(|v| cri::Int64Value { value: v }),
                    run_as_group: sc
                        .run_as_group
                        .or(psc.run_as_group)
                        .map(|v| cri::Int64Value { value: v }),
                    readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
                    supplemental_groups: psc.supplemental_groups.clone().unwrap_or_default(),
                    no_new_privs: sc.allow_privilege_escalation == Some(false),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let sandbox_config = self.sandbox_config(pod, None, 0);
        let created = self
            .k
            .cri
            .runtime
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.0.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await;
        let id = match created {
            Ok(r) => r.into_inner().container_id,
            Err(status) => {
                let message = status.message().to_string();
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "Failed",
                    format!("Error: {message}"),
                )
                .await;
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CreateContainerError".into(),
                        message,
                    },
                );
                return Ok(());
            }
        };
        self.event(
            pod,
            Some(&c.name),
            "Normal",
            "Created",
            format!("Created container: {}", c.name),
        )
        .await;
        if let Err(status) = self
            .k
            .cri
            .runtime
            .clone()
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            let message = status.message().to_string();
            self.event(
                pod,
                Some(&c.name),
                "Warning",
                "Failed",
                format!("Error: {message}"),
            )
            .await;
            self.waiting.insert(
                c.name.clone(),
                Waiting {
                    reason: "RunContainerError".into(),
                    message,
                },
            );
            return Ok(());
        }
        self.waiting.remove(&c.name);
        self.event(
            pod,
            Some(&c.name),
            "Normal",
            "Started",
            format!("Started container {}", c.name),
        )
        .await;
        if let Some(cmd) = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone())
        {
            match self.k.cri.exec_sync(&id, cmd, 30).await {
                Ok(r) if r.exit_code == 0 => {}
                Ok(r) => {
                    let msg = format!(
                        "PostStartHook failed: exit code {}: {}",
                        r.exit_code,
                        String::from_utf8_lossy(&r.stderr)
                    );
                    self.event(pod, Some(&c.name), "Warning", "FailedPostStartHook", msg)
                        .await;
                    let _ = self.k.cri.stop_container(&id, 0).await;
                }
                Err(e) => {
                    self.event(
                        pod,
                        Some(&c.name),
                        "Warning",
                        "FailedPostStartHook",
                        e.to_string(),
                    )
                    .await;
                }
            }
        }
        Ok(())
    }

    /// Decides what to do with one container: start, restart after back-off, probe. Returns what the
    /// phase computation needs.
    #[allow(clippy::too_many_arguments)]
    async fn sync_container(
        &mut self,
        pod: &Pod,
        c: &Container,
        instances: &[Instance],
        sandbox: &(String, String),
        volumes: &crate::volumes::VolumePaths,
        policy: &str,
        pid_target: Option<&str>,
    ) -> Result<Observed, crate::KubeletError> {
        let latest = instances.last();
        match latest {
            None => {
                self.start_container(pod, c, sandbox, 0, volumes, pid_target)
                    .await?;
                Ok(Observed::Waiting)
            }
            Some(inst) if inst.created() => {
                // Created but never started (the agent died in between): start it now.
                let _ = self
                    .k
                    .cri
                    .runtime
                    .clone()
                    .start_container(cri::StartContainerRequest {
                        container_id: inst.status.id.clone(),
                    })
                    .await;
                Ok(Observed::Running)
            }
            Some(inst) if inst.running() => {
                if inst
                    .status
                    .annotations
                    .get(ANNOTATION_HASH)
                    .is_some_and(|h| *h != container_hash(c))
                {
                    self.event(
                        pod,
                        Some(&c.name),
                        "Normal",
                        "Killing",
                        format!("Container {} definition changed, will be restarted", c.name),
                    )
                    .await;
                    let grace = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds)
                        .unwrap_or(30);
                    self.stop_container(pod, c, &inst.status.id, grace).await;
                    return Ok(Observed::Running);
                }
                self.run_probes(pod, c, inst, sandbox).await;
                Ok(Observed::Running)
            }
            Some(inst) => {
                let code = inst.status.exit_code;
                if !status::should_restart(policy, code) {
                    return Ok(Observed::Exited {
                        code,
                        will_restart: false,
                    });
                }
                let finished = inst.status.finished_at;
                let since_exit = Duration::from_nanos(
                    u64::try_from(now_nanos().saturating_sub(finished)).unwrap_or(0),
                );
                // A container that ran for 10 minutes resets the back-off (as the kubelet does).
                let ran = Duration::from_nanos(
                    u64::try_from(finished.saturating_sub(inst.status.started_at)).unwrap_or(0),
                );
                let delay = if ran > Duration::from_secs(600) {
                    Duration::ZERO
                } else {
                    status::restart_backoff(inst.attempt)
                };
                if since_exit < delay {
                    let message = format!(
                        "back-off {}s restarting failed container={} pod={}_{}({})",
                        delay.as_secs(),
                        c.name,
                        pod.metadata.name.as_deref().unwrap_or_default(),
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        self.uid
                    );
                    self.waiting.insert(
                        c.name.clone(),
                        Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message,
                        },
                    );
                    let msg = format!(
                        "Back-off restarting failed container {} in pod {}",
                        c.name,
                        pod_key(pod).replace('/', "_")
                    );
                    self.event(pod, Some(&c.name), "Warning", "BackOff", msg)
                        .await;
                    return Ok(Observed::Exited {
                        code,
                        will_restart: true,
                    });
                }
                // Keep only the instance before this one for `--previous`.
                for old in &instances[..instances.len().saturating_sub(1)] {
                    let _ = self.k.cri.remove_container(&old.status.id).await;
                }
                self.start_container(pod, c, sandbox, inst.attempt + 1, volumes, pid_target)
                    .await?;
                Ok(Observed::Exited {
                    code,
                    will_restart: true,
                })
            }
        }
    }

    async fn run_probes(
        &mut self,
        pod: &Pod,
        c: &Container,
        inst: &Instance,
        sandbox: &(String, String),
    ) {
        // Probe state belongs to one container instance.
        if self.probe_owner.get(&c.name) != Some(&inst.status.id) {
            self.probe_owner
                .insert(c.name.clone(), inst.status.id.clone());
            for kind in [
                ProbeKind::Liveness,
                ProbeKind::Readiness,
                ProbeKind::Startup,
            ] {
                self.probes.remove(&(c.name.clone(), kind));
            }
        }
        let started_at = inst.status.started_at;
        let startup_done = match &c.startup_probe {
            None => true,
            Some(p) => {
                let st = self
                    .probes
                    .entry((c.name.clone(), ProbeKind::Startup))
                    .or_insert_with(ProbeState::new);
                if !st.succeeded_once {
                    if let Some(outcome) = probes::maybe_run(
                        &self.k,
                        p,
                        st,
                        started_at,
                        &inst.status.id,
                        &sandbox.1,
                        c,
                    )
                    .await
                        && let Err(msg) = outcome
                    {
                        self.event(
                            pod,
                            Some(&c.name),
                            "Warning",
                            "Unhealthy",
                            format!("Startup probe failed: {msg}"),
                        )
                        .await;
                    }
                    let st = self
                        .probes
                        .entry((c.name.clone(), ProbeKind::Startup))
                        .or_insert_with(ProbeState::new);
                    if st.failed_past_threshold(p) {
                        self.event(
                            pod,
                            Some(&c.name),
                            "Normal",
                            "Killing",
                            format!(
                                "Container {} failed startup probe, will be restarted",
                                c.name
                            ),
                        )
                        .await;
                        let grace = pod
                            .spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                            .unwrap_or(30);
                        self.stop_container(pod, c, &inst.status.id, grace).await;
                        return;
                    }
                }
                self.probes
                    .get(&(c.name.clone(), ProbeKind::Startup))
                    .is_some_and(|s| s.succeeded_once)
            }
        };
        if !startup_done {
            return;
        }
        if let Some(p) = &c.liveness_probe {
            let st = self
                .probes
                .entry((c.name.clone(), ProbeKind::Liveness))
                .or_insert_with(ProbeState::new);
            if let Some(Err(msg)) =
                probes::maybe_run(&self.k, p, st, started_at, &inst.status.id, &sandbox.1, c).await
            {
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "Unhealthy",
                    format!("Liveness probe failed: {msg}"),
                )
                .await;
            }
            let st = self
                .probes
                .entry((c.name.clone(), ProbeKind::Liveness))
                .or_insert_with(ProbeState::new);
            if st.failed_past_threshold(p) {
                st.reset();
                self.event(
                    pod,
                    Some(&c.name),
                    "Normal",
                    "Killing",
                    format!(
                        "Container {} failed liveness probe, will be restarted",
                        c.name
                    ),
                )
                .await;
                let grace = p
                    .termination_grace_period_seconds
                    .or_else(|| {
                        pod.spec
                            .as_ref()
                            .and_then(|s| s.termination_grace_period_seconds)
                    })
                    .unwrap_or(30);
                self.stop_container(pod, c, &inst.status.id, grace).await;
                return;
            }
        }
        if let Some(p) = &c.readiness_probe {
            let st = self
                .probes
                .entry((c.name.clone(), ProbeKind::Readiness))
                .or_insert_with(ProbeState::new);
            if let Some(Err(msg)) =
                probes::maybe_run(&self.k, p, st, started_at, &inst.status.id, &sandbox.1, c).await
            {
                self.event(
                    pod,
                    Some(&c.name),
                    "Warning",
                    "Unhealthy",
                    format!("Readiness probe failed: {msg}"),
                )
                .await;
            }
        }
    }

    fn container_ready(&self, c: &Container, running: bool) -> bool {
        if !running {
            return false;
        }
        if c.startup_probe.is_some()
            && !self
                .probes
                .get(&(c.name.clone(), ProbeKind::Startup))
                .is_some_and(|s| s.succeeded_once)
        {
            return false;
        }
        match &c.readiness_probe {
            None => true,
            Some(p) => self
                .probes
                .get(&(c.name.clone(), ProbeKind::Readiness))
                .is_some_and(|s| s.ready(p)),
        }
    }

    /// Runs preStop, then stops the container with the remaining grace.
    async fn stop_container(&mut self, pod: &Pod, c: &Container, id: &str, grace: i64) {
        let started = Instant::now();
        if let Some(cmd) = c
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone())
            && grace > 0
        {
            let _ = tokio::time::timeout(
                Duration::from_secs(grace.unsigned_abs()),
                self.k.cri.exec_sync(id, cmd, grace),
            )
            .await;
        }
        let left = grace - i64::try_from(started.elapsed().as_secs()).unwrap_or(0);
        let _ = pod;
        if let Err(e) = self.k.cri.stop_container(id, left.max(0)).await {
            tracing::warn!(error = %e, container = %c.name, "cannot stop container");
        }
    }

    /// One reconcile pass; returns when to look again.
    async fn sync(&mut self, pod: &Pod) -> Result<Duration, crate::KubeletError> {
        let policy = restart_policy(pod);
        let phase_now = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if self.terminal || phase_now == "Succeeded" || phase_now == "Failed" {
            // Terminal pods keep their exited containers (for logs) but no sandbox.
            if !self.terminal {
                self.terminal = true;
                for sb in self.k.cri.sandboxes(Some(&self.uid)).await? {
                    for c in self.k.cri.containers(&sb.id).await? {
                        let _ = self.k.cri.stop_container(&c.id, 0).await;
                    }
                    let _ = self
                        .k
                        .cri
                        .runtime
                        .clone()
                        .stop_pod_sandbox(cri::StopPodSandboxRequest {
                            pod_sandbox_id: sb.id,
                        })
                        .await;
                }
            }
            return Ok(Duration::from_secs(3600));
        }
        if self.start_time.is_none() {
            self.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.clone())
                .or_else(|| Some(crate::node::now()));
        }
        let volumes = match crate::volumes::prepare(&self.k, pod, &self.uid).await {
            Ok(v) => v,
            Err(message) => {
                self.event(pod, None, "Warning", "FailedMount", message.clone())
                    .await;
                self.sandbox_error = Some(message);
                self.post_status(pod, None, &HashMap::new(), None).await?;
                return Ok(Duration::from_secs(2));
            }
        };
        let Some(sandbox) = self.ensure_sandbox(pod).await? else {
            self.post_status(pod, None, &HashMap::new(), None).await?;
            return Ok(Duration::from_secs(2));
        };
        let mut instances = self.instances(&sandbox.0).await?;
        let spec = pod.spec.clone().unwrap_or_default();
        // Init containers, in order; each must succeed before the next starts.
        let mut initialized = true;
        let mut init_failed = false;
        let main_started = spec
            .containers
            .iter()
            .any(|c| instances.get(&c.name).is_some_and(|l| !l.is_empty()));
        for ic in spec.init_containers.iter().flatten() {
            let list = instances.get(&ic.name).cloned().unwrap_or_default();
            if is_sidecar(ic) {
                // A sidecar (init container with `restartPolicy: Always`): kept running whatever the
                // pod's policy; the next init container starts once it runs. Once the containers
                // have started, a sidecar's restart does not hold them back.
                let running = list.last().is_some_and(|i| i.running());
                self.sync_container(pod, ic, &list, &sandbox, &volumes, "Always", None)
                    .await?;
                if running || main_started {
                    continue;
                }
                initialized = false;
                break;
            }
            match list.last() {
                Some(i) if i.exited() && i.status.exit_code == 0 => continue,
                Some(i) if i.exited() && policy == "Never" => {
                    init_failed = true;
                    initialized = false;
                    break;
                }
                _ => {
                    initialized = false;
                    let init_policy = if policy == "Never" {
                        "Never"
                    } else {
                        "OnFailure"
                    };
                    self.sync_container(pod, ic, &list, &sandbox, &volumes, init_policy, None)
                        .await?;
                    break;
                }
            }
        }
        let mut observed = Vec::new();
        if initialized {
            for c in &spec.containers {
                let list = instances.get(&c.name).cloned().unwrap_or_default();
                observed.push(
                    self.sync_container(pod, c, &list, &sandbox, &volumes, &policy, None)
                        .await?,
                );
            }
            // Ephemeral containers (`kubectl debug`): started once, never restarted.
            for (c, target) in ephemeral_containers(&spec) {
                let list = instances.get(&c.name).cloned().unwrap_or_default();
                let target_id = target
                    .and_then(|t| instances.get(&t)?.last().filter(|i| i.running()).cloned())
                    .map(|i| i.status.id);
                self.sync_container(
                    pod,
                    &c,
                    &list,
                    &sandbox,
                    &volumes,
                    "Never",
                    target_id.as_deref(),
                )
                .await?;
            }
            instances = self.instances(&sandbox.0).await?;
        } else {
            instances = self.instances(&sandbox.0).await.unwrap_or(instances);
        }
        let phase = if init_failed {
            "Failed"
        } else if !initialized {
            "Pending"
        } else {
            // Re-derive from the fresh view: a container started in this pass is running now.
            let fresh: Vec<Observed> = spec
                .containers
                .iter()
                .zip(observed.iter())
                .map(
                    |(c, before)| match instances.get(&c.name).and_then(|l| l.last()) {
                        Some(i) if i.running() || i.created() => Observed::Running,
                        Some(i) if i.exited() => match before {
                            Observed::Exited { .. } => *before,
                            _ => Observed::Exited {
                                code: i.status.exit_code,
                                will_restart: status::should_restart(&policy, i.status.exit_code),
                            },
                        },
                        _ => Observed::Waiting,
                    },
                )
                .collect();
            status::phase(&policy, &fresh)
        };
        self.post_status(pod, Some(&sandbox), &instances, Some(phase))
            .await?;
        Ok(TICK)
    }

    fn container_status(
        &self,
        c: &Container,
        list: Option<&Vec<Instance>>,
        init: bool,
    ) -> ContainerStatus {
        let latest = list.and_then(|l| l.last());
        let previous = list.and_then(|l| {
            if l.len() >= 2 {
                l.get(l.len() - 2)
            } else {
                None
            }
        });
        let terminated = |i: &Instance| ContainerState {
            terminated: Some(ContainerStateTerminated {
                container_id: Some(format!("containerd://{}", i.status.id)),
                exit_code: i.status.exit_code,
                reason: Some(
                    if !i.status.reason.is_empty()
                        && i.status.reason != "Completed"
                        && i.status.reason != "Error"
                    {
                        i.status.reason.clone()
                    } else if i.status.exit_code == 0 {
                        "Completed".into()
                    } else {
                        "Error".into()
                    },
                ),
                message: Some(i.status.message.clone()).filter(|m| !m.is_empty()),
                started_at: time_from_nanos(i.status.started_at),
                finished_at: time_from_nanos(i.status.finished_at),
                signal: None,
            }),
            ..Default::default()
        };
        let waiting = self.waiting.get(&c.name);
        let running = latest.is_some_and(|i| i.running());
        let state = match latest {
            Some(i) if i.running() => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time_from_nanos(i.status.started_at),
                }),
                ..Default::default()
            },
            Some(i) if i.exited() && waiting.is_none() => terminated(i),
            _ => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(waiting.map(|w| w.reason.clone()).unwrap_or_else(|| {
                        if init && latest.is_none() {
                            "PodInitializing".into()
                        } else {
                            "ContainerCreating".into()
                        }
                    })),
                    message: waiting.map(|w| w.message.clone()).filter(|m| !m.is_empty()),
                }),
                ..Default::default()
            },
        };
        // The last termination: the previous instance, or the latest one while it waits to restart.
        let last_state = match latest {
            Some(i) if i.exited() && waiting.is_some() => Some(terminated(i)),
            _ => previous.filter(|p| p.exited()).map(terminated),
        };
        let restart_count = latest.map(|i| i.attempt).unwrap_or(0);
        ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: latest
                .map(|i| i.status.image_ref.clone())
                .unwrap_or_default(),
            container_id: latest.map(|i| format!("containerd://{}", i.status.id)),
            ready: (!init || is_sidecar(c)) && self.container_ready(c, running),
            started: Some(
                running
                    && (c.startup_probe.is_none()
                        || self
                            .probes
                            .get(&(c.name.clone(), ProbeKind::Startup))
                            .is_some_and(|s| s.succeeded_once)),
            ),
            restart_count: i32::try_from(restart_count).unwrap_or(i32::MAX),
            state: Some(state),
            last_state: Some(last_state.unwrap_or_default()),
            ..Default::default()
        }
    }

    async fn post_status(
        &mut self,
        pod: &Pod,
        sandbox: Option<&(String, String)>,
        instances: &HashMap<String, Vec<Instance>>,
        phase: Option<&str>,
    ) -> Result<(), crate::KubeletError> {
        let spec = pod.spec.clone().unwrap_or_default();
        let now = crate::node::now();
        let init_statuses: Vec<ContainerStatus> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| self.container_status(c, instances.get(&c.name), true))
            .collect();
        let statuses: Vec<ContainerStatus> = spec
            .containers
            .iter()
            .map(|c| self.container_status(c, instances.get(&c.name), false))
            .collect();
        let main_started = statuses.iter().any(|s| {
            s.state
                .as_ref()
                .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
        });
        let initialized = spec
            .init_containers
            .iter()
            .flatten()
            .zip(&init_statuses)
            .all(|(c, s)| {
                let state = s.state.as_ref();
                if is_sidecar(c) {
                    main_started || state.is_some_and(|st| st.running.is_some())
                } else {
                    state
                        .and_then(|st| st.terminated.as_ref())
                        .is_some_and(|t| t.exit_code == 0)
                }
            })
            && sandbox.is_some();
        let sidecars_ready = spec
            .init_containers
            .iter()
            .flatten()
            .zip(&init_statuses)
            .all(|(c, s)| !is_sidecar(c) || s.ready);
        let containers_ready =
            statuses.iter().all(|s| s.ready) && sidecars_ready && sandbox.is_some();
        let phase = phase.unwrap_or("Pending");
        let gates_ready = spec.readiness_gates.iter().flatten().all(|g| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == g.condition_type && c.status == "True")
                })
        });
        let old_conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let cond = |type_: &str, ok: bool, reason: Option<&str>| {
            let status = if ok { "True" } else { "False" };
            let prev = old_conditions.iter().find(|c| c.type_ == type_);
            PodCondition {
                type_: type_.into(),
                status: status.into(),
                reason: if ok { None } else { reason.map(str::to_string) },
                last_transition_time: match prev {
                    Some(p) if p.status == status => p.last_transition_time.clone(),
                    _ => Some(now.clone()),
                },
                ..Default::default()
            }
        };
        let not_ready: Vec<String> = statuses
            .iter()
            .filter(|s| !s.ready)
            .map(|s| s.name.clone())
            .collect();
        let mut ready_cond = cond(
            "Ready",
            containers_ready && gates_ready && phase == "Running",
            Some("ContainersNotReady"),
        );
        let mut cr_cond = cond(
            "ContainersReady",
            containers_ready,
            Some("ContainersNotReady"),
        );
        if !not_ready.is_empty() {
            let msg = format!("containers with unready status: [{}]", not_ready.join(" "));
            ready_cond.message = Some(msg.clone());
            cr_cond.message = Some(msg);
        }
        if phase == "Succeeded" || phase == "Failed" {
            ready_cond.reason = Some("PodCompleted".into());
            cr_cond.reason = Some("PodCompleted".into());
            ready_cond.message = None;
            cr_cond.message = None;
        }
        let mut init_cond = cond("Initialized", initialized, Some("ContainersNotInitialized"));
        if !initialized {
            let pending: Vec<String> = init_statuses
                .iter()
                .filter(|s| {
                    s.state
                        .as_ref()
                        .and_then(|st| st.terminated.as_ref())
                        .is_none_or(|t| t.exit_code != 0)
                })
                .map(|s| s.name.clone())
                .collect();
            if !pending.is_empty() {
                init_cond.message = Some(format!(
                    "containers with incomplete status: [{}]",
                    pending.join(" ")
                ));
            }
        }
        let ours = [
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "Ready",
        ];
        let mut conditions: Vec<PodCondition> = vec![
            cond("PodReadyToStartContainers", sandbox.is_some(), None),
            init_cond,
            ready_cond,
            cr_cond,
        ];
        conditions.extend(
            old_conditions
                .iter()
                .filter(|c| !ours.contains(&c.type_.as_str()))
                .cloned(),
        );
        let pod_ip = sandbox
            .map(|s| s.1.clone())
            .filter(|ip| !ip.is_empty())
            .or_else(|| {
                spec.host_network
                    .unwrap_or(false)
                    .then(|| self.k.config.node_ip.to_string())
            });
        let host_ip = self.k.config.node_ip.to_string();
        let mut status = serde_json::json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [HostIP { ip: host_ip.clone() }],
            "startTime": self.start_time,
            "containerStatuses": statuses,
        });
        if !init_statuses.is_empty() {
            status["initContainerStatuses"] =
                serde_json::to_value(&init_statuses).unwrap_or_default();
        }
        let ephemeral: Vec<ContainerStatus> = ephemeral_containers(&spec)
            .iter()
            .map(|(c, _)| self.container_status(c, instances.get(&c.name), false))
            .map(|mut s| {
                s.ready = false;
                s
            })
            .collect();
        if !ephemeral.is_empty() {
            status["ephemeralContainerStatuses"] =
                serde_json::to_value(&ephemeral).unwrap_or_default();
        }
        if let Some(ip) = &pod_ip {
            status["podIP"] = serde_json::json!(ip);
            status["podIPs"] = serde_json::to_value([PodIP { ip: ip.clone() }]).unwrap_or_default();
        }
        if let Some(err) = &self.sandbox_error
            && sandbox.is_none()
        {
            status["message"] = serde_json::json!(err);
        }
        // Compare without the timestamps that change every pass.
        if self.last_status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(
            self.k.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        match api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
        {
            Ok(_) => {
                if phase == "Succeeded" || phase == "Failed" {
                    self.terminal = true;
                    if let Some(sb) = sandbox {
                        let _ = self
                            .k
                            .cri
                            .runtime
                            .clone()
                            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                                pod_sandbox_id: sb.0.clone(),
                            })
                            .await;
                    }
                }
                self.last_status = Some(status);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stops every container (preStop, SIGTERM, then SIGKILL after `grace`) and removes the sandbox.
    async fn teardown(&mut self, pod: Option<&Pod>, grace: i64) {
        let Ok(sandboxes) = self.k.cri.sandboxes(Some(&self.uid)).await else {
            return;
        };
        let mut stops = Vec::new();
        for sb in &sandboxes {
            let Ok(containers) = self.k.cri.containers(&sb.id).await else {
                continue;
            };
            for c in containers {
                if c.state != cri::ContainerState::ContainerRunning as i32 {
                    continue;
                }
                let name = c
                    .labels
                    .get(LABEL_CONTAINER_NAME)
                    .cloned()
                    .unwrap_or_default();
                let spec_c = pod
                    .and_then(|p| p.spec.as_ref())
                    .and_then(|s| s.containers.iter().find(|x| x.name == name).cloned());
                if let Some(pod) = pod {
                    self.event(
                        pod,
                        Some(&name),
                        "Normal",
                        "Killing",
                        format!("Stopping container {name}"),
                    )
                    .await;
                }
                let cri = self.k.cri.clone();
                stops.push(async move {
                    let started = Instant::now();
                    if let Some(cmd) = spec_c
                        .as_ref()
                        .and_then(|c| c.lifecycle.as_ref())
                        .and_then(|l| l.pre_stop.as_ref())
                        .and_then(|h| h.exec.as_ref())
                        .and_then(|e| e.command.clone())
                        && grace > 0
                    {
                        let _ = tokio::time::timeout(
                            Duration::from_secs(grace.unsigned_abs()),
                            cri.exec_sync(&c.id, cmd, grace),
                        )
                        .await;
                    }
                    let left = grace - i64::try_from(started.elapsed().as_secs()).unwrap_or(0);
                    let _ = cri.stop_container(&c.id, left.max(0)).await;
                });
            }
        }
        futures::future::join_all(stops).await;
        for sb in &sandboxes {
            if let Ok(containers) = self.k.cri.containers(&sb.id).await {
                for c in containers {
                    let _ = self.k.cri.remove_container(&c.id).await;
                }
            }
            if let Err(e) = self.k.cri.remove_sandbox(&sb.id).await {
                tracing::warn!(error = %e, sandbox = %sb.id, "cannot remove sandbox");
            }
        }
        crate::volumes::cleanup(&self.k, &self.uid);
        if let Some(pod) = pod {
            let _ = std::fs::remove_dir_all(self.log_dir(pod));
        }
    }

    /// The last step of a graceful deletion: the kubelet deletes the pod object with grace 0.
    async fn finish_deletion(&mut self, pod: &Pod) {
        let api: Api<Pod> = Api::namespaced(
            self.k.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(error = %e, pod = %pod_key(pod), "cannot delete pod"),
        }
    }
}

/// A sidecar: an init container that keeps running beside the containers (`restartPolicy: Always`).
fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// A pod's ephemeral containers as containers (the same fields), each with the container whose
/// processes it is to see (`targetContainerName`).
fn ephemeral_containers(
    spec: &k8s_openapi::api::core::v1::PodSpec,
) -> Vec<(Container, Option<String>)> {
    spec.ephemeral_containers
        .iter()
        .flatten()
        .filter_map(|e| {
            let mut value = serde_json::to_value(e).ok()?;
            if let Some(o) = value.as_object_mut() {
                o.remove("targetContainerName");
            }
            Some((
                serde_json::from_value(value).ok()?,
                e.target_container_name.clone(),
            ))
        })
        .collect()
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
