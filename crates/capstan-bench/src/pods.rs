//! `capstan-bench pods`: pod start-up latency of the real server with its local agent.
//!
//! Starts `capstan server` (agent on) on a free loopback port with a fresh data dir, then:
//! 1. start to `/readyz` and start to the Node's `Ready` condition `True` (polled every 20 ms);
//! 2. a warm-up pod (pulls the image if it is missing), deleted again;
//! 3. `--pods` pods one after the other, each created once the previous one is Running (the
//!    Kubernetes pod start-up SLO), then deleted; then the same number created all at once. Latency is
//!    create request sent to the first watch event with `status.phase == Running`, from one watch
//!    opened before the creates;
//! 4. the CRI floor: the same number of one-container pods started directly over CRI on the node's
//!    containerd, one after the other and then all at once (see `floor.rs`);
//! 5. RSS of the server and of containerd with the pods running and idle after the run, binary size.
//!
//! Clean-up (also after a failure): every CRI sandbox left is removed, the server gets SIGTERM (SIGKILL
//! after 10 s), processes whose command line or root is in the temp dir are killed and mounts under it
//! unmounted. Only one agent-enabled server may run on a machine (shared CNI bridge and pod CIDR), so
//! the benchmark waits for others to end first.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::PodsArgs;
use crate::api::{Lines, Server, free_port, query_escape, wait_ready};
use crate::client::{Conn, Endpoint};
use crate::floor::{self, Floor, FloorSample};
use crate::procfs::{self, mib};
use crate::stats::{ms, percentile};

const NAMESPACE: &str = "bench";
const NODE_NAME: &str = "capstan-bench";
/// The label every benchmark pod carries.
const POD_LABEL: (&str, &str) = ("app", "capstan-bench-pods");
/// The kubelet's pod capacity (`maxPods`).
const MAX_PODS: usize = 110;
const NODE_POLL: Duration = Duration::from_millis(20);
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The warm-up pod may have to pull the image.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(180);
const POD_RUNNING_TIMEOUT: Duration = Duration::from_secs(60);
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);
const SERVER_GRACE: Duration = Duration::from_secs(10);
const OTHER_AGENTS_POLL: Duration = Duration::from_secs(5);

// Targets from the issue.
const TARGET_POD_P99_MS: f64 = 1000.0;
const TARGET_NODE_READY_MS: f64 = 5000.0;

/// Whether `args` (a command line) is a `capstan server` that runs a local agent.
fn is_agent_server(args: &[String]) -> bool {
    let Some(program) = args.first() else {
        return false;
    };
    let binary = Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    binary == "capstan"
        && args.get(1).is_some_and(|a| a == "server")
        && !args.iter().any(|a| a == "--disable-agent")
}

/// Waits (up to `limit`) until no other agent-enabled `capstan server` runs on this machine.
async fn wait_for_other_agents(limit: Duration) -> Result<()> {
    let start = Instant::now();
    let mut told = false;
    loop {
        let others: Vec<String> = procfs::processes()
            .into_iter()
            .filter(|p| is_agent_server(&p.args))
            .map(|p| format!("{} {}", p.pid, p.args.join(" ")))
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            bail!(
                "another capstan server with an agent still runs after {limit:?} (they share the \
                 CNI bridge and pod CIDR):\n{}",
                others.join("\n")
            );
        }
        if !told {
            eprintln!(
                "waiting for other agent-enabled servers to end:\n{}",
                others.join("\n")
            );
            told = true;
        }
        tokio::time::sleep(OTHER_AGENTS_POLL).await;
    }
}

/// A benchmark pod: `image` running `sleep 3600`, restartPolicy Always, no probes. The grace period
/// is 1 s because `sleep` as PID 1 ignores SIGTERM (deleting would otherwise take 30 s per pod).
fn pod_json(name: &str, image: &str) -> Bytes {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {POD_LABEL.0: POD_LABEL.1},
        },
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "sleep",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    });
    Bytes::from(pod.to_string())
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

/// What the benchmark needs of one pod watch event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodEvent {
    kind: String,
    name: String,
    resource_version: String,
    phase: String,
    node_name: String,
}

/// Reads one watch event line; BOOKMARKs yield `None`, ERROR events are errors.
fn parse_event(line: &[u8]) -> Result<Option<PodEvent>> {
    let event: WatchEvent = serde_json::from_slice(line)
        .with_context(|| format!("undecodable watch event: {}", String::from_utf8_lossy(line)))?;
    let text = |pointer: &str| {
        event
            .object
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    match event.kind.as_str() {
        "BOOKMARK" => Ok(None),
        "ERROR" => bail!("watch error event: {}", event.object),
        _ => Ok(Some(PodEvent {
            name: text("/metadata/name"),
            resource_version: text("/metadata/resourceVersion"),
            phase: text("/status/phase"),
            node_name: text("/spec/nodeName"),
            kind: event.kind,
        })),
    }
}

/// A message of the watch task.
#[derive(Debug)]
enum Watched {
    Event(PodEvent, Instant),
    Failed(String),
}

fn watch_path(resource_version: &str) -> String {
    format!(
        "/api/v1/namespaces/{NAMESPACE}/pods?watch=true&allowWatchBookmarks=true&resourceVersion={}",
        query_escape(resource_version)
    )
}

/// Watches the benchmark namespace's pods from `resource_version`, sending every event with the time it
/// arrived; resumes from the last resourceVersion when the server ends the watch.
async fn watch_pods(
    endpoint: &Endpoint,
    mut resource_version: String,
    tx: &mpsc::UnboundedSender<Watched>,
) -> Result<()> {
    loop {
        let mut conn = endpoint.connect().await?;
        let (status, mut body) = conn
            .start(Method::GET, &watch_path(&resource_version), None)
            .await?;
        if status != StatusCode::OK {
            let text = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            bail!(
                "watch answered {status}: {}",
                String::from_utf8_lossy(&text)
            );
        }
        let mut lines = Lines::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the pod watch failed")?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let at = Instant::now();
            let mut events = Vec::new();
            lines.push(&data, |line| {
                if !line.is_empty() {
                    events.push(parse_event(line));
                }
            });
            for event in events {
                let Some(event) = event? else { continue };
                if !event.resource_version.is_empty() {
                    resource_version.clone_from(&event.resource_version);
                }
                if tx.send(Watched::Event(event, at)).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// What the watch has shown about the benchmark's pods so far.
#[derive(Debug, Default)]
struct PodStates {
    /// When a pod was first seen Running.
    running: HashMap<String, Instant>,
    /// When a pod was first seen bound to a node.
    bound: HashMap<String, Instant>,
    /// Pods seen and not deleted since.
    present: HashSet<String>,
    /// The last phase seen of every pod.
    phase: HashMap<String, String>,
}

impl PodStates {
    fn apply(&mut self, event: PodEvent, at: Instant) {
        if event.kind == "DELETED" {
            self.present.remove(&event.name);
            return;
        }
        if !event.node_name.is_empty() {
            self.bound.entry(event.name.clone()).or_insert(at);
        }
        if event.phase == "Running" {
            self.running.entry(event.name.clone()).or_insert(at);
        }
        self.present.insert(event.name.clone());
        self.phase.insert(event.name, event.phase);
    }

    /// Pods of `names` not Running yet, with their last phase, for error messages.
    fn not_running(&self, names: &[String]) -> String {
        let waiting: Vec<String> = names
            .iter()
            .filter(|n| !self.running.contains_key(*n))
            .take(10)
            .map(|n| {
                let phase = self.phase.get(n).map_or("not seen", String::as_str);
                format!(
                    "{n} ({})",
                    if phase.is_empty() { "no phase" } else { phase }
                )
            })
            .collect();
        waiting.join(", ")
    }
}

/// The pod watch as the benchmark reads it.
#[derive(Debug)]
struct PodWatch {
    rx: mpsc::UnboundedReceiver<Watched>,
    states: PodStates,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    fn open(endpoint: Endpoint, resource_version: String) -> PodWatch {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            if let Err(e) = watch_pods(&endpoint, resource_version, &tx).await {
                let _ = tx.send(Watched::Failed(format!("{e:#}")));
            }
        });
        PodWatch {
            rx,
            states: PodStates::default(),
            task,
        }
    }

    /// Reads events until `done` holds, for at most `timeout`; `what` and `detail` explain a timeout.
    async fn until(
        &mut self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&PodStates) -> bool,
        detail: impl Fn(&PodStates) -> String,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.states) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Watched::Event(event, at))) => self.states.apply(event, at),
                Ok(Some(Watched::Failed(e))) => bail!("the pod watch failed: {e}"),
                Ok(None) => bail!("the pod watch ended"),
                Err(_) => bail!(
                    "timed out after {timeout:?} waiting for {what}: {}",
                    detail(&self.states)
                ),
            }
        }
        Ok(())
    }

    async fn until_running(&mut self, names: &[String], timeout: Duration) -> Result<()> {
        let what = if names.len() == 1 {
            format!("pod {} to run", names[0])
        } else {
            format!("{} pods to run", names.len())
        };
        self.until(
            timeout,
            &what,
            |s| names.iter().all(|n| s.running.contains_key(n)),
            |s| format!("still waiting: {}", s.not_running(names)),
        )
        .await
    }

    async fn until_gone(&mut self, names: &[String], timeout: Duration) -> Result<()> {
        self.until(
            timeout,
            "pods to be deleted",
            |s| names.iter().all(|n| !s.present.contains(n)),
            |s| {
                let left: Vec<&String> = names.iter().filter(|n| s.present.contains(*n)).collect();
                format!("{} left, e.g. {:?}", left.len(), left.first())
            },
        )
        .await
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn create_pod(conn: &mut Conn, name: &str, image: &str) -> Result<()> {
    let (status, body) = conn
        .call(
            Method::POST,
            &format!("/api/v1/namespaces/{NAMESPACE}/pods"),
            Some(pod_json(name, image)),
        )
        .await?;
    ensure!(
        status == StatusCode::CREATED,
        "creating pod {name} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// Deletes `names` (all requests in flight at once) and waits until the watch shows them gone.
async fn delete_pods(conn: &Conn, watch: &mut PodWatch, names: &[String]) -> Result<Duration> {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(names.len());
    for name in names {
        let mut conn = conn.clone();
        let path = format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}");
        tasks.push(tokio::spawn(async move {
            let (status, body) = conn.call(Method::DELETE, &path, None).await?;
            ensure!(
                matches!(
                    status,
                    StatusCode::OK | StatusCode::ACCEPTED | StatusCode::NOT_FOUND
                ),
                "DELETE {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await.context("delete task failed")??;
    }
    watch.until_gone(names, DELETE_TIMEOUT).await?;
    Ok(start.elapsed())
}

/// One round's per-pod latencies, create request sent to Running seen, and create to bound.
#[derive(Debug, Default)]
struct Round {
    running: Vec<Duration>,
    bound: Vec<Duration>,
    /// First create sent to the last pod Running.
    wall: Duration,
}

impl Round {
    fn collect(states: &PodStates, sent: &[(String, Instant)]) -> Round {
        let mut round = Round::default();
        for (name, at) in sent {
            if let Some(running) = states.running.get(name) {
                round.running.push(running.saturating_duration_since(*at));
            }
            if let Some(bound) = states.bound.get(name) {
                round.bound.push(bound.saturating_duration_since(*at));
            }
        }
        let first = sent.iter().map(|(_, at)| *at).min();
        let last = sent
            .iter()
            .filter_map(|(name, _)| states.running.get(name))
            .max();
        if let (Some(first), Some(last)) = (first, last) {
            round.wall = last.saturating_duration_since(first);
        }
        round
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}

/// Creates `names` one after the other, each once the previous one is Running.
async fn sequential(
    conn: &mut Conn,
    watch: &mut PodWatch,
    names: &[String],
    image: &str,
) -> Result<Round> {
    let mut sent = Vec::with_capacity(names.len());
    for name in names {
        sent.push((name.clone(), Instant::now()));
        create_pod(conn, name, image).await?;
        watch
            .until_running(std::slice::from_ref(name), POD_RUNNING_TIMEOUT)
            .await?;
    }
    Ok(Round::collect(&watch.states, &sent))
}

/// Creates all `names` at once (every request in flight together on one HTTP/2 connection).
async fn burst(conn: &Conn, watch: &mut PodWatch, names: &[String], image: &str) -> Result<Round> {
    let mut tasks = Vec::with_capacity(names.len());
    for name in names {
        let mut conn = conn.clone();
        let (name, image) = (name.clone(), image.to_owned());
        tasks.push(tokio::spawn(async move {
            let at = Instant::now();
            create_pod(&mut conn, &name, &image).await?;
            anyhow::Ok((name, at))
        }));
    }
    let mut sent = Vec::with_capacity(names.len());
    for task in tasks {
        sent.push(task.await.context("create task failed")??);
    }
    watch.until_running(names, ROUND_TIMEOUT).await?;
    Ok(Round::collect(&watch.states, &sent))
}

#[derive(Deserialize)]
struct NodeObject {
    #[serde(default)]
    status: NodeStatus,
}

#[derive(Deserialize, Default)]
struct NodeStatus {
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
}

/// Whether a Node's JSON has the condition Ready True.
fn node_ready(body: &[u8]) -> bool {
    serde_json::from_slice::<NodeObject>(body).is_ok_and(|node| {
        node.status
            .conditions
            .iter()
            .any(|c| c.kind == "Ready" && c.status == "True")
    })
}

/// Times from spawn until the Node exists and until it is Ready.
#[derive(Debug)]
struct NodeStartup {
    registered: Duration,
    ready: Duration,
}

async fn wait_node_ready(
    conn: &mut Conn,
    server: &mut Server,
    spawned: Instant,
) -> Result<NodeStartup> {
    let path = format!("/api/v1/nodes/{NODE_NAME}");
    let mut registered = None;
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "server exited ({status}); its log ends:\n{}",
                server.log_tail()
            );
        }
        let (status, body) = conn.call(Method::GET, &path, None).await?;
        let now = spawned.elapsed();
        if status == StatusCode::OK {
            registered.get_or_insert(now);
            if node_ready(&body) {
                return Ok(NodeStartup {
                    registered: registered.unwrap_or(now),
                    ready: now,
                });
            }
        }
        if now > NODE_READY_TIMEOUT {
            bail!(
                "node {NODE_NAME} not Ready {NODE_READY_TIMEOUT:?} after start (registered: {}); \
                 the server log ends:\n{}",
                registered.is_some(),
                server.log_tail()
            );
        }
        tokio::time::sleep(NODE_POLL).await;
    }
}

/// Memory of the node's processes at one moment, in bytes.
#[derive(Debug, Default, Clone, Copy)]
struct NodeMemory {
    server: u64,
    server_peak: u64,
    containerd: u64,
    shims: u64,
    shim_count: usize,
}

/// The containerd of `data_dir` and the shims of its containers, from /proc.
fn node_memory(server_pid: u32, data_dir: &Path) -> Result<NodeMemory> {
    let dir = data_dir.display().to_string();
    let (server, server_peak) = procfs::rss(server_pid)?;
    let mut memory = NodeMemory {
        server,
        server_peak,
        ..NodeMemory::default()
    };
    for p in procfs::processes() {
        if !p.args.iter().any(|a| a.contains(&dir)) {
            continue;
        }
        let binary = Path::new(&p.args[0])
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Ok((rss, _)) = procfs::rss(p.pid) else {
            continue;
        };
        if binary == "containerd" {
            memory.containerd += rss;
        } else if binary.starts_with("containerd-shim") {
            memory.shims += rss;
            memory.shim_count += 1;
        }
    }
    Ok(memory)
}

/// Sends SIGTERM to the server, SIGKILL after [`SERVER_GRACE`]; returns how long it took to exit and
/// whether it needed SIGKILL.
async fn stop_server(server: &mut Server) -> (Duration, bool) {
    let start = Instant::now();
    if matches!(server.child.try_wait(), Ok(Some(_))) {
        return (Duration::ZERO, false);
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(server.pid().to_string())
        .status();
    while start.elapsed() < SERVER_GRACE {
        if matches!(server.child.try_wait(), Ok(Some(_))) {
            return (start.elapsed(), false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    (start.elapsed(), true)
}

/// Decodes the octal escapes (`\040` for a space) of a /proc/self/mountinfo path.
fn unescape_mount_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = path.get(i + 1..i + 4)
            && let Ok(value) = u8::from_str_radix(digits, 8)
        {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or under `dir` in a /proc/self/mountinfo text, deepest first.
fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// What was left behind in the temp dir after the server stopped.
#[derive(Debug, Default)]
struct Leftovers {
    killed: usize,
    unmounted: usize,
}

/// Kills every process whose command line holds `dir` (containerd, shims: `pkill -9 -f dir`) or whose
/// root is under it (container processes), then lazily unmounts what is mounted under `dir`.
fn clear_dir(dir: &Path) -> Leftovers {
    let text = dir.display().to_string();
    let me = std::process::id();
    let mut leftovers = Leftovers::default();
    for p in procfs::processes() {
        if p.pid == me {
            continue;
        }
        let in_args = p.args.iter().any(|a| a.contains(&text));
        let rooted = procfs::root_dir(p.pid).is_some_and(|r| r.starts_with(dir));
        if (in_args || rooted)
            && Command::new("kill")
                .arg("-9")
                .arg(p.pid.to_string())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        {
            leftovers.killed += 1;
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for mount in mounts_under(&mountinfo, dir) {
        if Command::new("umount")
            .arg("-l")
            .arg(&mount)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            leftovers.unmounted += 1;
        }
    }
    leftovers
}

/// Removes every sandbox still on the node's containerd; returns how many there were.
async fn remove_sandboxes(socket: &Path) -> Result<usize> {
    let cri = capstan_kubelet::Cri::connect(socket).context("cannot connect to containerd")?;
    let sandboxes = cri.sandboxes(None).await.context("cannot list sandboxes")?;
    for sandbox in &sandboxes {
        for container in cri.containers(&sandbox.id).await.unwrap_or_default() {
            let _ = cri.stop_container(&container.id, 0).await;
            let _ = cri.remove_container(&container.id).await;
        }
        cri.remove_sandbox(&sandbox.id)
            .await
            .with_context(|| format!("cannot remove sandbox {}", sandbox.id))?;
    }
    Ok(sandboxes.len())
}

/// Everything the run measured.
#[derive(Debug, Default)]
struct Figures {
    ready: Duration,
    node_registered: Duration,
    node_ready: Duration,
    warmup: Duration,
    sequential: Round,
    sequential_delete: Duration,
    burst: Round,
    burst_delete: Duration,
    floor: Floor,
    loaded: NodeMemory,
    idle: NodeMemory,
    pods: usize,
}

/// The measurements, from a ready server to idle after the run. Leaves nothing running in the API.
async fn measure(
    args: &PodsArgs,
    server: &mut Server,
    endpoint: &Endpoint,
    spawned: Instant,
    dir: &Path,
    figures: &mut Figures,
) -> Result<()> {
    let data_dir = dir.join("server");
    let mut conn = endpoint.connect().await?;
    let node = wait_node_ready(&mut conn, server, spawned).await?;
    figures.node_registered = node.registered;
    figures.node_ready = node.ready;
    eprintln!(
        "/readyz {:.0} ms, node Ready {:.0} ms after start",
        ms(figures.ready),
        ms(node.ready)
    );

    let rv = conn.create_namespace_for_pods(NAMESPACE).await?;
    let mut watch = PodWatch::open(endpoint.clone(), rv);

    // Warm-up: the image (and the sandbox image) on the node, a first sandbox on the CNI bridge.
    let warmup = vec!["warmup".to_owned()];
    let start = Instant::now();
    create_pod(&mut conn, &warmup[0], &args.image).await?;
    watch.until_running(&warmup, WARMUP_TIMEOUT).await?;
    figures.warmup = start.elapsed();
    delete_pods(&conn, &mut watch, &warmup).await?;
    eprintln!(
        "warm-up pod ran after {:.0} ms; {} pods one after the other",
        ms(figures.warmup),
        args.pods
    );

    let seq = names("seq", args.pods);
    figures.sequential = sequential(&mut conn, &mut watch, &seq, &args.image).await?;
    figures.sequential_delete = delete_pods(&conn, &mut watch, &seq).await?;
    eprintln!("{} pods at once", args.pods);

    let all = names("burst", args.pods);
    figures.burst = burst(&conn, &mut watch, &all, &args.image).await?;
    figures.loaded = node_memory(server.pid(), &data_dir)?;
    figures.burst_delete = delete_pods(&conn, &mut watch, &all).await?;
    drop(watch);

    eprintln!("CRI floor: {} pods over CRI", args.pods);
    let socket = data_dir.join("agent/containerd/containerd.sock");
    let logs = dir.join("floor-logs");
    figures.floor = floor::run(&socket, &args.image, args.pods, &logs).await?;

    // Idle: no pods, the agent only heartbeating.
    tokio::time::sleep(Duration::from_secs(3)).await;
    figures.idle = node_memory(server.pid(), &data_dir)?;
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

/// p50, p99 and max in milliseconds.
fn summary(samples: &[Duration]) -> (f64, f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let pick = |q| percentile(&sorted, q).map(ms).unwrap_or(0.0);
    (pick(0.50), pick(0.99), pick(1.0))
}

fn print_round(what: &str, round: &Round, pods: usize) {
    let (p50, p99, max) = summary(&round.running);
    println!(
        "| {what}: create sent -> Running, p50 / p99 / max (ms) | p99 < {TARGET_POD_P99_MS:.0} | \
         {p50:.0} / {p99:.0} / {max:.0} | {} |",
        met(round.running.len() == pods && p99 < TARGET_POD_P99_MS)
    );
    let (b50, b99, _) = summary(&round.bound);
    println!(
        "| {what}: create sent -> bound to the node, p50 / p99 (ms) | | {b50:.0} / {b99:.0} | |"
    );
}

fn print(figures: &Figures, args: &PodsArgs, load: &str, binary: u64) {
    let pods = figures.pods;
    println!(
        "Pod start-up benchmark: {pods} pods ({}, `sleep 3600`, restartPolicy Always, no probes), \
         one capstan server with its agent; load average at start {load}",
        args.image
    );
    println!("| measure | target | measured | met |");
    println!("|---|---:|---:|:---:|");
    println!("| start -> /readyz (ms) | | {:.0} | |", ms(figures.ready));
    println!(
        "| start -> Node registered (ms) | | {:.0} | |",
        ms(figures.node_registered)
    );
    println!(
        "| start -> Node Ready (ms) | < {TARGET_NODE_READY_MS:.0} | {:.0} | {} |",
        ms(figures.node_ready),
        met(ms(figures.node_ready) < TARGET_NODE_READY_MS)
    );
    println!(
        "| warm-up pod, create -> Running (ms) | | {:.0} | |",
        ms(figures.warmup)
    );
    print_round(
        &format!("sequential, {pods} pods"),
        &figures.sequential,
        pods,
    );
    print_round(&format!("burst, {pods} pods"), &figures.burst, pods);
    println!(
        "| burst: first create -> last Running (ms) | | {:.0} | |",
        ms(figures.burst.wall)
    );
    let totals: Vec<Duration> = figures.floor.samples.iter().map(|s| s.total).collect();
    let (f50, f99, fmax) = summary(&totals);
    println!(
        "| CRI floor, {pods} pods one after the other: RunPodSandbox -> RUNNING, p50 / p99 / max (ms) \
         | | {f50:.0} / {f99:.0} / {fmax:.0} | |"
    );
    let burst: Vec<Duration> = figures.floor.burst.iter().map(|s| s.total).collect();
    let (b50, b99, bmax) = summary(&burst);
    println!(
        "| CRI floor, {pods} pods at once: RunPodSandbox -> RUNNING, p50 / p99 / max (ms) \
         | | {b50:.0} / {b99:.0} / {bmax:.0} | |"
    );
    println!(
        "| CRI floor burst: first RunPodSandbox -> last RUNNING (ms) | | {:.0} | |",
        ms(figures.floor.burst_wall)
    );
    let step = |f: fn(&FloorSample) -> Duration| {
        let all: Vec<Duration> = figures.floor.samples.iter().map(f).collect();
        summary(&all).0
    };
    println!(
        "| CRI floor p50 steps: RunPodSandbox / CreateContainer / StartContainer (ms) | | \
         {:.0} / {:.1} / {:.0} | |",
        step(|s| s.sandbox),
        step(|s| s.create),
        step(|s| s.start)
    );
    println!(
        "| delete {pods} pods -> gone: sequential round / burst round (ms) | | {:.0} / {:.0} | |",
        ms(figures.sequential_delete),
        ms(figures.burst_delete)
    );
    println!(
        "| CRI floor teardown, {pods} sandboxes one after the other (ms) | | {:.0} | |",
        ms(figures.floor.teardown)
    );
    println!(
        "| binary size, {} (MiB) | | {:.1} | |",
        args.server_bin.display(),
        mib(binary)
    );
    let m = &figures.loaded;
    println!(
        "| RSS with {pods} pods running: server / containerd / {} shims (MiB) | | {:.1} / {:.1} / {:.1} | |",
        m.shim_count,
        mib(m.server),
        mib(m.containerd),
        mib(m.shims)
    );
    let m = &figures.idle;
    println!(
        "| RSS idle after the run: server / containerd (MiB) | | {:.1} / {:.1} | |",
        mib(m.server),
        mib(m.containerd)
    );
    println!("| server peak RSS (MiB) | | {:.1} | |", mib(m.server_peak));
    println!();
    let in_order = |samples: &[Duration]| {
        let all: Vec<String> = samples.iter().map(|d| format!("{:.0}", ms(*d))).collect();
        all.join(" ")
    };
    println!(
        "breakdown: sequential create -> Running per pod, in creation order (ms): {}",
        in_order(&figures.sequential.running)
    );
    let floor: Vec<Duration> = figures.floor.samples.iter().map(|s| s.total).collect();
    println!(
        "breakdown: CRI floor sequential per pod, in order (ms): {}",
        in_order(&floor)
    );
}

pub(crate) async fn run(args: PodsArgs) -> Result<()> {
    ensure!(
        (1..=MAX_PODS).contains(&args.pods),
        "--pods must be 1 to {MAX_PODS} (the node's pod capacity)"
    );
    ensure!(
        args.server_bin.is_file(),
        "no server binary at {} (build it with `cargo build --release -p capstan`)",
        args.server_bin.display()
    );
    let binary = std::fs::metadata(&args.server_bin)?.len();
    wait_for_other_agents(Duration::from_secs(args.wait_for_agents)).await?;
    let dir = crate::tempdir::TempDir::new("capstan-bench-pods-")?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_owned();
    let data_dir = dir.path().join("server");
    let log = dir.path().join("server.log");
    let port = free_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let log_file = std::fs::File::create(&log).context("cannot create the server log")?;

    let spawned = Instant::now();
    let child = Command::new(&args.server_bin)
        .arg("server")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--https-port")
        .arg(port.to_string())
        .args(["--bind-address", "127.0.0.1", "--node-name", NODE_NAME])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {}", args.server_bin.display()))?;
    let mut server = Server { child, log };
    let mut figures = Figures {
        pods: args.pods,
        ..Figures::default()
    };
    let measured = async {
        let (endpoint, startup) = wait_ready(
            &mut server,
            &data_dir.join("admin.kubeconfig"),
            addr,
            spawned,
        )
        .await?;
        figures.ready = startup.ready;
        measure(
            &args,
            &mut server,
            &endpoint,
            spawned,
            dir.path(),
            &mut figures,
        )
        .await
    }
    .await;

    // Clean-up, also after a failure.
    let socket = data_dir.join("agent/containerd/containerd.sock");
    let left_sandboxes = if socket.exists() {
        remove_sandboxes(&socket).await
    } else {
        Ok(0)
    };
    let (stop_time, killed_server) = stop_server(&mut server).await;
    let leftovers = clear_dir(dir.path());
    if let Some(to) = &args.server_log
        && let Err(e) = std::fs::copy(&server.log, to)
    {
        eprintln!("cannot copy the server log to {}: {e}", to.display());
    }
    let tail = server.log_tail();
    if let Err(e) = measured {
        return Err(e.context(format!("the server log ends:\n{tail}")));
    }

    print(&figures, &args, &load, binary);
    let left_sandboxes = left_sandboxes?;
    println!();
    println!(
        "clean-up: sandboxes left after the run {left_sandboxes}; server exited {:.1} s after \
         SIGTERM{}; processes killed in the temp dir {}, mounts unmounted {}",
        stop_time.as_secs_f64(),
        if killed_server {
            " (needed SIGKILL)"
        } else {
            ""
        },
        leftovers.killed,
        leftovers.unmounted
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn finds_agent_enabled_servers_only() {
        let cases = [
            ("./target/debug/capstan server --data-dir /tmp/cs1", true),
            ("/usr/bin/capstan server", true),
            (
                "target/release/capstan server --disable-agent --data-dir x",
                false,
            ),
            ("capstan agent --server https://x", false),
            ("capstan-bench pods", false),
            ("vim capstan server", false),
            ("", false),
        ];
        for (line, want) in cases {
            assert_eq!(is_agent_server(&args(line)), want, "{line}");
        }
        assert!(!is_agent_server(&[]));
    }

    #[test]
    fn pods_sleep_in_the_image_without_probes() {
        let pod: serde_json::Value =
            serde_json::from_slice(&pod_json("seq-001", "reg/busybox:1")).expect("json");
        assert_eq!(pod["metadata"]["name"], "seq-001");
        assert_eq!(pod["metadata"]["namespace"], NAMESPACE);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], "reg/busybox:1");
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["command"], serde_json::json!(["sleep", "3600"]));
        assert!(c.get("readinessProbe").is_none() && c.get("livenessProbe").is_none());
    }

    #[test]
    fn watch_events_yield_phase_and_node() {
        let line = br#"{"type":"MODIFIED","object":{"metadata":{"name":"seq-000","resourceVersion":"12"},"spec":{"nodeName":"n"},"status":{"phase":"Running"}}}"#;
        let event = parse_event(line).expect("parse").expect("event");
        assert_eq!(
            event,
            PodEvent {
                kind: "MODIFIED".into(),
                name: "seq-000".into(),
                resource_version: "12".into(),
                phase: "Running".into(),
                node_name: "n".into(),
            }
        );
        let added = parse_event(br#"{"type":"ADDED","object":{"metadata":{"name":"p"}}}"#)
            .expect("parse")
            .expect("event");
        assert_eq!((added.phase.as_str(), added.node_name.as_str()), ("", ""));
        let bookmark = br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#;
        assert_eq!(parse_event(bookmark).expect("parse"), None);
        let error = br#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#;
        assert!(format!("{:#}", parse_event(error).expect_err("error")).contains("410"));
        assert!(parse_event(b"{not json").is_err());
    }

    #[test]
    fn pod_states_keep_first_running_and_bound_times() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let event = |kind: &str, phase: &str, node: &str| PodEvent {
            kind: kind.into(),
            name: "p".into(),
            resource_version: String::new(),
            phase: phase.into(),
            node_name: node.into(),
        };
        let mut states = PodStates::default();
        states.apply(event("ADDED", "Pending", ""), at(1));
        assert!(states.present.contains("p") && states.bound.is_empty());
        states.apply(event("MODIFIED", "Pending", "n"), at(5));
        states.apply(event("MODIFIED", "Running", "n"), at(40));
        states.apply(event("MODIFIED", "Running", "n"), at(90));
        assert_eq!(states.bound["p"], at(5));
        assert_eq!(states.running["p"], at(40));
        let names = vec!["p".to_owned(), "q".to_owned()];
        assert_eq!(states.not_running(&names), "q (not seen)");
        states.apply(event("DELETED", "Running", "n"), at(100));
        assert!(!states.present.contains("p"));

        let sent = [("p".to_owned(), at(0)), ("q".to_owned(), at(2))];
        let round = Round::collect(&states, &sent);
        assert_eq!(round.running, [Duration::from_millis(40)]);
        assert_eq!(round.bound, [Duration::from_millis(5)]);
        assert_eq!(round.wall, Duration::from_millis(40));
    }

    #[test]
    fn node_readiness_needs_ready_true() {
        let cases: [(&str, bool); 4] = [
            (
                r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
                true,
            ),
            (
                r#"{"status":{"conditions":[{"type":"Ready","status":"False"}]}}"#,
                false,
            ),
            (
                r#"{"status":{"conditions":[{"type":"MemoryPressure","status":"True"}]}}"#,
                false,
            ),
            (r#"{"metadata":{"name":"n"}}"#, false),
        ];
        for (body, want) in cases {
            assert_eq!(node_ready(body.as_bytes()), want, "{body}");
        }
    }

    #[test]
    fn mounts_under_the_dir_deepest_first() {
        let info = "\
22 1 0:21 / / rw - overlay overlay rw
90 22 0:50 / /tmp/b/x/rootfs rw - overlay overlay rw
91 22 0:51 / /tmp/b/x/a\\040b/shm rw - tmpfs shm rw
92 22 0:52 / /tmp/bb/y rw - tmpfs t rw
93 22 0:53 / /tmp/b rw - tmpfs t rw
";
        let got = mounts_under(info, Path::new("/tmp/b"));
        let want: Vec<PathBuf> = ["/tmp/b/x/a b/shm", "/tmp/b/x/rootfs", "/tmp/b"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(got, want);
        assert_eq!(unescape_mount_path("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape_mount_path("trailing\\"), "trailing\\");
    }

    #[test]
    fn summaries_are_p50_p99_max() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(summary(&samples), (50.0, 99.0, 100.0));
        assert_eq!(summary(&[]), (0.0, 0.0, 0.0));
    }
}
