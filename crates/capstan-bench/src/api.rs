//! `capstan-bench api`: the API server benchmark.
//!
//! Starts `capstan server --disable-agent` on a free loopback port with a fresh data dir (SQLite
//! store), then, over HTTPS with the admin client certificate:
//! 1. start to `/readyz` (spawn until `GET /readyz` answers 200 `ok`, polled every 5 ms);
//! 2. idle RSS 2 s after ready;
//! 3. opens `--watchers` pod watches in namespace `bench` from the resourceVersion of a list;
//! 4. creates `--pods` pods with `--clients` concurrent clients (one HTTP/2 connection each);
//! 5. lists all pods (5 times) and pages through them with `limit=500`;
//! 6. watch delivery latency: event received minus create request sent, over every watcher and pod.
//!
//! Prints one Markdown table with the issue's targets, then a CPU-time breakdown.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::sync::watch;

use crate::ApiArgs;
use crate::client::{Conn, Endpoint};
use crate::kubeconfig;
use crate::procfs::{self, mib};
use crate::stats::{ms, p50_p99_ms};

const NAMESPACE: &str = "bench";
/// Every benchmark pod's name is this prefix and a zero-padded index.
const POD_PREFIX: &str = "bench-pod-";
const POLL: Duration = Duration::from_millis(5);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long watchers may still take to see every pod once the last create was acknowledged.
const WATCH_DRAIN: Duration = Duration::from_secs(60);
const LIST_RUNS: usize = 5;
const PAGE_LIMIT: usize = 500;
/// Requests per breakdown phase.
const BREAKDOWN_CALLS: usize = 3000;

// Targets from the issue.
const TARGET_CREATES_PER_S: f64 = 3000.0;
const TARGET_LIST_MS: f64 = 100.0;
const TARGET_WATCH_P99_MS: f64 = 50.0;
const TARGET_IDLE_RSS_MIB: f64 = 24.0;
const TARGET_READY_MS: f64 = 1000.0;

/// The server process; killed when dropped, so no error path leaves it running.
#[derive(Debug)]
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the server logged, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free port")?;
    Ok(listener.local_addr()?.port())
}

/// Times from spawn to each start-up milestone.
#[derive(Debug, Default)]
pub(crate) struct Startup {
    pub(crate) kubeconfig: Duration,
    pub(crate) listening: Duration,
    pub(crate) ready: Duration,
}

/// Polls every [`POLL`] until the admin kubeconfig exists, then until `GET /readyz` answers 200 `ok`.
pub(crate) async fn wait_ready(
    server: &mut Server,
    kubeconfig_path: &Path,
    addr: SocketAddr,
    spawned: Instant,
) -> Result<(Endpoint, Startup)> {
    let mut startup = Startup::default();
    let mut endpoint = None;
    let mut conn: Option<Conn> = None;
    loop {
        if spawned.elapsed() > READY_TIMEOUT {
            bail!(
                "server not ready after {READY_TIMEOUT:?}; its log ends:\n{}",
                server.log_tail()
            );
        }
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "server exited ({status}); its log ends:\n{}",
                server.log_tail()
            );
        }
        if endpoint.is_none()
            && let Ok(text) = std::fs::read_to_string(kubeconfig_path)
        {
            let creds = kubeconfig::parse(&text)?;
            let want = format!("https://{addr}");
            ensure!(
                creds.server == want,
                "the kubeconfig points at {}, not {want}",
                creds.server
            );
            endpoint = Some(Endpoint::new(addr, &creds)?);
            startup.kubeconfig = spawned.elapsed();
        }
        if let Some(endpoint) = &endpoint {
            if conn.is_none()
                && let Ok(c) = endpoint.connect().await
            {
                startup.listening = spawned.elapsed();
                conn = Some(c);
            }
            if let Some(c) = conn.as_mut() {
                match c.call(Method::GET, "/readyz", None).await {
                    Ok((StatusCode::OK, body)) if body.as_ref() == b"ok" => {
                        startup.ready = spawned.elapsed();
                        return Ok((endpoint.clone(), startup));
                    }
                    Ok(_) => {}
                    Err(_) => conn = None,
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A small, realistic pod: labels, annotations, one container with ports, env, resources and
/// probes, volumes, a security context and a toleration. About 1.4 KiB of JSON.
fn pod_json(index: usize) -> Bytes {
    let name = pod_name(index);
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "app": "bench",
                "tier": "web",
                "shard": format!("s{}", index % 16),
                "app.kubernetes.io/managed-by": "capstan-bench",
            },
            "annotations": {
                "bench.capstan.dev/purpose": "API server benchmark",
            },
        },
        "spec": {
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": "app",
                "image": "127.0.0.1:5000/busybox:latest",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", "httpd -f -p 8080 -h /www"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {"name": "POD_INDEX", "value": index.to_string()},
                    {"name": "MODE", "value": "benchmark"},
                ],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                },
                "readinessProbe": {
                    "httpGet": {"path": "/", "port": 8080},
                    "periodSeconds": 10,
                },
                "livenessProbe": {
                    "tcpSocket": {"port": 8080},
                    "initialDelaySeconds": 5,
                    "periodSeconds": 20,
                },
                "volumeMounts": [
                    {"name": "www", "mountPath": "/www"},
                    {"name": "config", "mountPath": "/etc/bench", "readOnly": true},
                ],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "runAsNonRoot": true,
                    "runAsUser": 1000,
                },
            }],
            "volumes": [
                {"name": "www", "emptyDir": {}},
                {"name": "config", "configMap": {"name": "bench-config"}},
            ],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }],
        },
    });
    Bytes::from(pod.to_string())
}

fn pod_name(index: usize) -> String {
    format!("{POD_PREFIX}{index:06}")
}

fn pod_index(name: &str) -> Option<usize> {
    name.strip_prefix(POD_PREFIX)?.parse().ok()
}

/// Percent-encodes a query parameter value (everything but RFC 3986 unreserved characters).
pub(crate) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Splits a byte stream into newline-terminated lines, keeping a partial line between chunks.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Feeds `chunk` and calls `each` for every complete line in it (without the newline).
    pub(crate) fn push(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        let mut rest = chunk;
        if !self.pending.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.pending.extend_from_slice(rest);
                return;
            };
            self.pending.extend_from_slice(&rest[..end]);
            each(&self.pending);
            self.pending.clear();
            rest = &rest[end + 1..];
        }
        while let Some(end) = memchr::memchr(b'\n', rest) {
            each(&rest[..end]);
            rest = &rest[end + 1..];
        }
        self.pending.extend_from_slice(rest);
    }
}

#[derive(Deserialize)]
struct WatchEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    object: Object<'a>,
}

#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow)]
    metadata: Metadata<'a>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "resourceVersion", default, borrow)]
    resource_version: Cow<'a, str>,
}

/// What the benchmark needs of one watch event line.
#[derive(Debug, PartialEq, Eq)]
struct Seen<'a> {
    kind: Cow<'a, str>,
    name: Cow<'a, str>,
    resource_version: Cow<'a, str>,
}

/// The start of every ADDED event line the server writes.
const ADDED_PREFIX: &[u8] = br#"{"type":"ADDED","object":"#;

/// Reads watch event lines cheaply. 100 watchers of 10,000 pods are about 4 GB of JSON, and the
/// benchmark shares two cores with the server, so decoding every event in full would mostly
/// measure the client. The server writes `{"type":"ADDED","object":{...}}`, and the benchmark's
/// pods hold `"name":"bench-pod-` only in `metadata.name`, so such a line is read by searching;
/// anything else (other event types, other layouts, escapes) is decoded in full.
#[derive(Debug)]
struct EventReader {
    name: memchr::memmem::Finder<'static>,
    resource_version: memchr::memmem::Finder<'static>,
}

impl EventReader {
    fn new() -> EventReader {
        EventReader {
            name: memchr::memmem::Finder::new(br#""name":"bench-pod-"#),
            resource_version: memchr::memmem::Finder::new(br#""resourceVersion":""#),
        }
    }

    /// The string after the first match of `finder`, starting `back` bytes before the needle's
    /// end, if it is closed by a quote with no escape before it.
    fn value_after<'a>(
        finder: &memchr::memmem::Finder<'_>,
        line: &'a [u8],
        back: usize,
    ) -> Option<&'a str> {
        let start = finder.find(line)? + finder.needle().len() - back;
        let len = memchr::memchr2(b'"', b'\\', &line[start..])?;
        if line[start + len] != b'"' {
            return None;
        }
        std::str::from_utf8(&line[start..start + len]).ok()
    }

    fn read<'a>(&self, line: &'a [u8]) -> Option<Seen<'a>> {
        if line.starts_with(ADDED_PREFIX)
            && let Some(name) = Self::value_after(&self.name, line, POD_PREFIX.len())
            && let Some(rv) = Self::value_after(&self.resource_version, line, 0)
        {
            return Some(Seen {
                kind: Cow::Borrowed("ADDED"),
                name: Cow::Borrowed(name),
                resource_version: Cow::Borrowed(rv),
            });
        }
        let event: WatchEvent<'a> = serde_json::from_slice(line).ok()?;
        Some(Seen {
            kind: event.kind,
            name: event.object.metadata.name,
            resource_version: event.object.metadata.resource_version,
        })
    }
}

#[derive(Deserialize)]
struct PodList {
    metadata: ListMeta,
    items: Vec<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

/// Nanoseconds since `t0`, never 0 (0 means "not yet").
fn since(t0: Instant, at: Instant) -> u64 {
    u64::try_from(at.duration_since(t0).as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// What one watcher saw.
#[derive(Debug)]
struct Watched {
    /// Receive time per pod index (nanoseconds since `t0`), 0 when never seen.
    received: Vec<u64>,
    seen: usize,
    duplicates: usize,
    /// Times the server ended the watch early and it was resumed from the last resourceVersion.
    restarts: usize,
    error: Option<String>,
}

fn watch_path(resource_version: &str) -> String {
    format!(
        "/api/v1/namespaces/{NAMESPACE}/pods?watch=true&resourceVersion={}",
        query_escape(resource_version)
    )
}

async fn open_watch(conn: &mut Conn, resource_version: &str) -> Result<Incoming> {
    let (status, body) = conn
        .start(Method::GET, &watch_path(resource_version), None)
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
    Ok(body)
}

/// Reads one watch until it has seen every pod or `stop` fires; resumes from the last
/// resourceVersion if the server ends it early.
async fn run_watcher(
    endpoint: Endpoint,
    mut conn: Conn,
    mut body: Incoming,
    mut resource_version: String,
    pods: usize,
    t0: Instant,
    mut stop: watch::Receiver<bool>,
) -> Watched {
    let mut out = Watched {
        received: vec![0; pods],
        seen: 0,
        duplicates: 0,
        restarts: 0,
        error: None,
    };
    let mut lines = Lines::default();
    let reader = EventReader::new();
    while out.seen < pods {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = stop.changed() => break,
        };
        match frame {
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let now = since(t0, Instant::now());
                lines.push(&data, |line| {
                    let Some(event) = reader.read(line) else {
                        out.error.get_or_insert_with(|| {
                            format!("undecodable watch event: {}", String::from_utf8_lossy(line))
                        });
                        return;
                    };
                    if !event.resource_version.is_empty() {
                        resource_version.clear();
                        resource_version.push_str(&event.resource_version);
                    }
                    if event.kind != "ADDED" {
                        if event.kind == "ERROR" {
                            out.error.get_or_insert_with(|| {
                                format!("watch error event: {}", String::from_utf8_lossy(line))
                            });
                        }
                        return;
                    }
                    match pod_index(&event.name) {
                        Some(i) if i < pods && out.received[i] == 0 => {
                            out.received[i] = now;
                            out.seen += 1;
                        }
                        Some(i) if i < pods => out.duplicates += 1,
                        _ => {}
                    }
                });
            }
            Some(Err(e)) => {
                out.error = Some(format!("watch stream failed: {e}"));
                break;
            }
            None => {
                // The server ended the watch (too slow a reader, or a timeout): resume like a
                // reflector does, from the last resourceVersion seen.
                out.restarts += 1;
                lines = Lines::default();
                let resumed = async {
                    let mut c = endpoint.connect().await?;
                    let b = open_watch(&mut c, &resource_version).await?;
                    anyhow::Ok((c, b))
                };
                match resumed.await {
                    Ok((c, b)) => {
                        conn = c;
                        body = b;
                    }
                    Err(e) => {
                        out.error = Some(format!("cannot resume the watch: {e:#}"));
                        break;
                    }
                }
            }
        }
    }
    drop(conn);
    out
}

/// One request of a load phase.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    path: String,
    body: Option<Bytes>,
}

/// The result of a load phase.
#[derive(Debug)]
struct Load {
    wall: Duration,
    latencies: Vec<Duration>,
}

/// Sends every call of `calls` once, from `clients` concurrent clients each on its own connection,
/// taking the next call as soon as the previous answered; every answer must be `want`. Records
/// when call `i` was sent in `sent[i]`, when given.
async fn drive(
    endpoint: &Endpoint,
    clients: usize,
    calls: Arc<Vec<Call>>,
    want: StatusCode,
    sent: Option<(Arc<Vec<AtomicU64>>, Instant)>,
) -> Result<Load> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(endpoint.connect().await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for mut conn in conns {
        let (calls, sent, next) = (calls.clone(), sent.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(calls.len() / clients + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(call) = calls.get(i) else {
                    return anyhow::Ok(latencies);
                };
                let at = Instant::now();
                if let Some((sent, t0)) = &sent {
                    sent[i].store(since(*t0, at), Ordering::Relaxed);
                }
                let (status, reply) = conn
                    .call(call.method.clone(), &call.path, call.body.clone())
                    .await?;
                if status != want {
                    bail!(
                        "{} {} answered {status}: {}",
                        call.method,
                        call.path,
                        String::from_utf8_lossy(&reply)
                    );
                }
                latencies.push(at.elapsed());
            }
        }));
    }
    let mut latencies = Vec::with_capacity(calls.len());
    for task in tasks {
        latencies.extend(task.await.context("client task failed")??);
    }
    Ok(Load {
        wall: start.elapsed(),
        latencies,
    })
}

/// Throughput, p50 and server CPU per request of one load phase.
#[derive(Debug)]
struct PhaseCost {
    per_s: f64,
    p50_ms: f64,
    server_cpu_ms: f64,
}

/// Runs `calls` with [`drive`] and measures what the server spent on them.
async fn cost(
    endpoint: &Endpoint,
    clients: usize,
    calls: Vec<Call>,
    want: StatusCode,
    pid: &str,
) -> Result<PhaseCost> {
    let n = calls.len();
    let before = procfs::cpu(pid)?;
    let mut load = drive(endpoint, clients, Arc::new(calls), want, None).await?;
    let cpu = procfs::cpu(pid)? - before;
    Ok(PhaseCost {
        per_s: n as f64 / load.wall.as_secs_f64(),
        p50_ms: p50_p99_ms(&mut load.latencies).0,
        server_cpu_ms: ms(cpu) / n as f64,
    })
}

/// The list phase's figures.
#[derive(Debug)]
struct Lists {
    median: Duration,
    /// Median time to the response head (the server has built the whole body by then).
    head: Duration,
    bytes: usize,
    paged: Duration,
    pages: usize,
}

async fn list_pods(conn: &mut Conn, pods: usize) -> Result<Lists> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let mut runs = Vec::with_capacity(LIST_RUNS);
    let mut heads = Vec::with_capacity(LIST_RUNS);
    let mut bytes = 0;
    for run in 0..LIST_RUNS {
        let start = Instant::now();
        let (status, body) = conn.start(Method::GET, &path, None).await?;
        heads.push(start.elapsed());
        let body = body.collect().await.context("reading the list")?.to_bytes();
        runs.push(start.elapsed());
        ensure!(status == StatusCode::OK, "list answered {status}");
        bytes = body.len();
        if run == 0 {
            let list: PodList = serde_json::from_slice(&body).context("list is not a PodList")?;
            ensure!(
                list.items.len() == pods,
                "list returned {} pods, want {pods}",
                list.items.len()
            );
        }
    }
    runs.sort_unstable();
    heads.sort_unstable();

    let start = Instant::now();
    let mut token: Option<String> = None;
    let (mut pages, mut items) = (0, 0);
    loop {
        let mut page_path = format!("{path}?limit={PAGE_LIMIT}");
        if let Some(token) = &token {
            let _ = write!(page_path, "&continue={}", query_escape(token));
        }
        let (status, body) = conn.call(Method::GET, &page_path, None).await?;
        ensure!(status == StatusCode::OK, "paged list answered {status}");
        let page: PodList = serde_json::from_slice(&body).context("page is not a PodList")?;
        pages += 1;
        items += page.items.len();
        match page.metadata.continue_token.filter(|t| !t.is_empty()) {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let paged = start.elapsed();
    ensure!(items == pods, "paging returned {items} pods, want {pods}");
    Ok(Lists {
        median: runs[runs.len() / 2],
        head: heads[heads.len() / 2],
        bytes,
        paged,
        pages,
    })
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

pub(crate) async fn run(args: ApiArgs) -> Result<()> {
    ensure!(args.pods > 0, "--pods must be at least 1");
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(
        args.server_bin.is_file(),
        "no server binary at {} (build it with `cargo build --release -p capstan`)",
        args.server_bin.display()
    );
    let dir = crate::tempdir::TempDir::new("capstan-bench-")?;
    // Other work on the machine shares its cores with the server; say how much there was.
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
        .arg("--disable-agent")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--https-port")
        .arg(port.to_string())
        .args(["--bind-address", "127.0.0.1"])
        .args(&args.server_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {}", args.server_bin.display()))?;
    let mut server = Server { child, log };
    let (endpoint, startup) = wait_ready(
        &mut server,
        &data_dir.join("admin.kubeconfig"),
        addr,
        spawned,
    )
    .await?;
    let pid = server.pid();
    eprintln!("server ready in {:.0} ms; idling 2 s", ms(startup.ready));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_rss, _) = procfs::rss(pid)?;

    let mut admin = endpoint.connect().await?;
    let rv = admin.create_namespace_for_pods(NAMESPACE).await?;

    let t0 = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut watchers = Vec::with_capacity(args.watchers);
    for _ in 0..args.watchers {
        let mut conn = endpoint.connect().await?;
        let body = open_watch(&mut conn, &rv).await?;
        watchers.push(tokio::spawn(run_watcher(
            endpoint.clone(),
            conn,
            body,
            rv.clone(),
            args.pods,
            t0,
            stop_rx.clone(),
        )));
    }
    eprintln!(
        "{} watches open; creating {} pods with {} clients",
        args.watchers, args.pods, args.clients
    );

    let pods_path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let create_call = |i: usize, query: &str| Call {
        method: Method::POST,
        path: format!("{pods_path}{query}"),
        body: Some(pod_json(i)),
    };
    let calls: Vec<Call> = (0..args.pods).map(|i| create_call(i, "")).collect();
    let body_bytes = calls
        .iter()
        .map(|c| c.body.as_ref().map_or(0, Bytes::len))
        .sum::<usize>()
        / args.pods;
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..args.pods).map(|_| AtomicU64::new(0)).collect());
    let pid_text = pid.to_string();
    let cpu_before = (procfs::cpu(&pid_text)?, procfs::cpu("self")?);
    let mut creates = drive(
        &endpoint,
        args.clients,
        Arc::new(calls),
        StatusCode::CREATED,
        Some((sent.clone(), t0)),
    )
    .await?;
    let cpu_creates = (
        procfs::cpu(&pid_text)? - cpu_before.0,
        procfs::cpu("self")? - cpu_before.1,
    );

    let drain_start = Instant::now();
    // Watchers stop by themselves once they have seen every pod; this stops the stragglers.
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(WATCH_DRAIN).await;
        let _ = stop_tx.send(true);
    });
    let mut results = Vec::with_capacity(watchers.len());
    for w in watchers {
        results.push(w.await);
    }
    stopper.abort();
    let drain_time = drain_start.elapsed();
    let mut watch_latencies = Vec::with_capacity(args.watchers * args.pods);
    let (mut seen, mut duplicates, mut restarts, mut errors) = (0, 0, 0, Vec::new());
    for result in results {
        let w = result.context("watcher panicked")?;
        seen += w.seen;
        duplicates += w.duplicates;
        restarts += w.restarts;
        errors.extend(w.error);
        for (i, &recv) in w.received.iter().enumerate() {
            if recv != 0 {
                let sent = sent[i].load(Ordering::Relaxed);
                watch_latencies.push(Duration::from_nanos(recv.saturating_sub(sent)));
            }
        }
    }
    let cpu_total_watch = (
        procfs::cpu(&pid_text)? - cpu_before.0,
        procfs::cpu("self")? - cpu_before.1,
    );

    let lists = list_pods(&mut admin, args.pods).await?;
    let (rss_after, rss_peak) = procfs::rss(pid)?;

    // Where a create's server time goes: the same clients on requests that do less of its work.
    eprintln!("breakdown runs: GET, dry-run create, create without watchers");
    let n = args.pods.min(BREAKDOWN_CALLS);
    let get = (0..n)
        .map(|i| Call {
            method: Method::GET,
            path: format!("{pods_path}/{}", pod_name(i)),
            body: None,
        })
        .collect();
    let get = cost(&endpoint, args.clients, get, StatusCode::OK, &pid_text).await?;
    let dry = (0..n)
        .map(|i| create_call(args.pods + i, "?dryRun=All"))
        .collect();
    let dry = cost(&endpoint, args.clients, dry, StatusCode::CREATED, &pid_text).await?;
    let unwatched = (0..n).map(|i| create_call(args.pods + i, "")).collect();
    let unwatched = cost(
        &endpoint,
        args.clients,
        unwatched,
        StatusCode::CREATED,
        &pid_text,
    )
    .await?;
    drop(admin);
    drop(server);

    let creates_per_s = args.pods as f64 / creates.wall.as_secs_f64();
    let (create_p50, create_p99) = p50_p99_ms(&mut creates.latencies);
    let (watch_p50, watch_p99) = p50_p99_ms(&mut watch_latencies);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let expected = args.watchers * args.pods;
    let list_ms = ms(lists.median);

    println!(
        "API server benchmark: {} pods (~{body_bytes} B JSON each), {} clients, {} watchers; \
         SQLite store, every write synced; HTTP/2 over TLS on loopback; load average at start {load}",
        args.pods, args.clients, args.watchers
    );
    println!("| measure | target | measured | met |");
    println!("|---|---:|---:|:---:|");
    println!(
        "| start to /readyz (ms) | < {TARGET_READY_MS:.0} | {:.0} | {} |",
        ms(startup.ready),
        met(ms(startup.ready) < TARGET_READY_MS)
    );
    println!(
        "| idle RSS, readyz + 2 s (MiB) | <= {TARGET_IDLE_RSS_MIB:.0} | {:.1} | {} |",
        mib(idle_rss),
        met(mib(idle_rss) <= TARGET_IDLE_RSS_MIB)
    );
    println!(
        "| create, {} clients (creates/s) | >= {TARGET_CREATES_PER_S:.0} | {creates_per_s:.0} | {} |",
        args.clients,
        met(creates_per_s >= TARGET_CREATES_PER_S)
    );
    println!("| create latency p50 (ms) | | {create_p50:.2} | |");
    println!("| create latency p99 (ms) | | {create_p99:.2} | |");
    println!(
        "| list all {} pods (ms, median of {LIST_RUNS}; {:.1} MiB) | < {TARGET_LIST_MS:.0} | {list_ms:.1} | {} |",
        args.pods,
        mib(lists.bytes as u64),
        met(list_ms < TARGET_LIST_MS)
    );
    println!(
        "| list with limit={PAGE_LIMIT}, all {} pages (ms total) | | {:.1} | |",
        lists.pages,
        ms(lists.paged)
    );
    if watch_latencies.is_empty() {
        println!(
            "| watch delivery create sent->event p99 (ms) | < {TARGET_WATCH_P99_MS:.0} | - | - |"
        );
    } else {
        println!("| watch delivery create sent->event p50 (ms) | | {watch_p50:.2} | |");
        println!(
            "| watch delivery create sent->event p99 (ms) | < {TARGET_WATCH_P99_MS:.0} | {watch_p99:.2} | {} |",
            met(watch_p99 < TARGET_WATCH_P99_MS)
        );
    }
    println!(
        "| watch events seen / expected ({} watchers x {} pods) | all | {seen} / {expected} | {} |",
        args.watchers,
        args.pods,
        met(seen == expected)
    );
    println!("| RSS after the run (MiB) | | {:.1} | |", mib(rss_after));
    println!("| peak RSS (MiB) | | {:.1} | |", mib(rss_peak));
    println!();
    println!(
        "breakdown: start: kubeconfig written {:.0} ms, listening {:.0} ms, ready {:.0} ms",
        ms(startup.kubeconfig),
        ms(startup.listening),
        ms(startup.ready)
    );
    println!(
        "breakdown: create phase {:.2} s wall; CPU server {:.2} s, bench client {:.2} s \
         ({cores} cores = {:.2} s available); server CPU per create {:.2} ms",
        creates.wall.as_secs_f64(),
        cpu_creates.0.as_secs_f64(),
        cpu_creates.1.as_secs_f64(),
        cores as f64 * creates.wall.as_secs_f64(),
        ms(cpu_creates.0) / args.pods as f64
    );
    println!(
        "breakdown: watchers done {:.2} s after the last create; CPU incl. watch drain: server \
         {:.2} s, bench client {:.2} s; duplicates {duplicates}, resumed watches {restarts}",
        drain_time.as_secs_f64(),
        cpu_total_watch.0.as_secs_f64(),
        cpu_total_watch.1.as_secs_f64()
    );
    println!(
        "breakdown: full list: response head after {:.1} ms, body read by {:.1} ms (medians)",
        ms(lists.head),
        list_ms
    );
    for (what, c) in [
        ("GET one pod", &get),
        ("create ?dryRun=All (no store write)", &dry),
        ("create, no watchers open", &unwatched),
    ] {
        println!(
            "breakdown: {n} x {what}: {:.0}/s, p50 {:.2} ms, server CPU {:.3} ms per request",
            c.per_s, c.p50_ms, c.server_cpu_ms
        );
    }
    for error in errors.iter().take(5) {
        println!("watch error: {error}");
    }
    ensure!(
        seen == expected,
        "watchers saw {seen} of {expected} pod events ({} errors)",
        errors.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_chunks() {
        let cases: [(&[&str], &[&str]); 4] = [
            (&["a\nb\n"], &["a", "b"]),
            (&["a", "b\nc", "\n"], &["ab", "c"]),
            (&["partial"], &[]),
            (&["x\n", "", "\n"], &["x", ""]),
        ];
        for (chunks, want) in cases {
            let mut lines = Lines::default();
            let mut got = Vec::new();
            for chunk in chunks {
                lines.push(chunk.as_bytes(), |l| {
                    got.push(String::from_utf8_lossy(l).into_owned())
                });
            }
            assert_eq!(got, want, "{chunks:?}");
        }
    }

    #[test]
    fn pod_bodies_are_pods_of_realistic_size_with_parseable_names() {
        let body = pod_json(42);
        assert!((1000..=2048).contains(&body.len()), "{} bytes", body.len());
        let pod: serde_json::Value = serde_json::from_slice(&body).expect("json");
        let name = pod["metadata"]["name"].as_str().expect("name");
        assert_eq!(pod_index(name), Some(42));
        assert_eq!(pod_index("other-1"), None);
    }

    #[test]
    fn watch_events_yield_type_name_and_resource_version() {
        let reader = EventReader::new();
        let seen = |kind: &'static str, name: &'static str, rv: &'static str| Seen {
            kind: kind.into(),
            name: name.into(),
            resource_version: rv.into(),
        };
        let cases: [(&str, Option<Seen<'_>>); 6] = [
            // The server's layout: found by search.
            (
                r#"{"type":"ADDED","object":{"kind":"Pod","metadata":{"labels":{"a":"b"},"name":"bench-pod-000007","resourceVersion":"91"},"spec":{}}}"#,
                Some(seen("ADDED", "bench-pod-000007", "91")),
            ),
            // Other layouts, other events and escapes: decoded in full.
            (
                r#"{"object":{"metadata":{"resourceVersion":"5","name":"bench-pod-000001"}},"type":"ADDED"}"#,
                Some(seen("ADDED", "bench-pod-000001", "5")),
            ),
            (
                r#"{"type":"MODIFIED","object":{"metadata":{"name":"bench-pod-000002","resourceVersion":"6"}}}"#,
                Some(seen("MODIFIED", "bench-pod-000002", "6")),
            ),
            (
                r#"{"type":"ADDED","object":{"metadata":{"name":"bench-pod-\u0030","resourceVersion":"7"}}}"#,
                Some(seen("ADDED", "bench-pod-0", "7")),
            ),
            (
                r#"{"type":"ERROR","object":{"kind":"Status","metadata":{},"code":410}}"#,
                Some(seen("ERROR", "", "")),
            ),
            (r#"{"type":"ADDED","object":"#, None),
        ];
        for (line, want) in cases {
            assert_eq!(reader.read(line.as_bytes()), want, "{line}");
        }
        assert_eq!(pod_index("bench-pod-000007"), Some(7));
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(query_escape("abc-1.2_~"), "abc-1.2_~");
        assert_eq!(query_escape("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }
}
