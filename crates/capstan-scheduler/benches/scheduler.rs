//! Scheduling throughput (kube's scheduler_perf "SchedulingBasic" shape): N fake Ready nodes
//! (32 cpu, 128Gi, 110 pods) and M pending pods with small requests are created through the API of
//! an in-process cluster first; then the clock starts, the scheduler starts, and a watch counts
//! pods until all are bound. Also measures the decisions alone (no API) to split the time.
//!
//! `cargo bench -p capstan-scheduler --bench scheduler` (`-- 1000` to run one size).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_apiserver::testing::TestCluster;
use capstan_client::Lean;
use capstan_scheduler::algorithm::{Algorithm, Profile};
use capstan_scheduler::cache::Cache;
use capstan_scheduler::types::{NodeSpec, PodInfo};
use capstan_scheduler::{Scheduler, SchedulerOptions};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The allocator `capstan` runs with, so the in-process API server costs what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PODS: usize = 10_000;

fn node_json(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }
    })
}

fn pod_json(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{i}"), "namespace": "default"},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}
    })
}

/// The client `capstan server` gives its scheduler: everything over one HTTP/2 connection.
async fn client_for(cluster: &TestCluster) -> Client {
    capstan_client::from_kubeconfig_yaml(&cluster.admin_kubeconfig())
        .await
        .expect("client")
}

struct Row {
    nodes: usize,
    setup: Duration,
    first_bind: Duration,
    all_bound: Duration,
    /// CPU time of the whole process (API server, store, scheduler, counting watch) meanwhile.
    cpu: Duration,
    /// Share of the machine's CPU time the hypervisor gave to others meanwhile (`steal`, %).
    steal: f64,
    decisions_per_sec: f64,
}

async fn create_nodes(client: &Client, n: usize) {
    let api: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("node-{i}");
                let node: Node = serde_json::from_value(node_json(&name)).expect("node");
                let created = api
                    .create(&PostParams::default(), &node)
                    .await
                    .expect("create node");
                let has_status = created.status.and_then(|s| s.allocatable).is_some();
                if !has_status {
                    let status = node_json(&name)["status"].clone();
                    api.patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": status})),
                    )
                    .await
                    .expect("node status");
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

async fn create_pods(client: &Client, m: usize) {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..m)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(pod_json(i)).expect("pod");
                api.create(&PostParams::default(), &pod)
                    .await
                    .expect("create pod");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
}

/// With `SCHEDULER_BENCH_MARKS` set, prints when the measured window starts and ends, in seconds
/// since boot (`/proc/uptime`), for `perf record -k CLOCK_MONOTONIC` + `perf report --time a,b`.
fn mark(what: &str) {
    if std::env::var_os("SCHEDULER_BENCH_MARKS").is_some() {
        let uptime = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
        let seconds = uptime.split_whitespace().next().unwrap_or_default();
        eprintln!("window {what}: {seconds}");
    }
}

/// The machine's CPU time so far (`/proc/stat` first line): (steal, total) in clock ticks.
fn cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    (ticks.get(7).copied().unwrap_or(0), ticks.iter().sum())
}

/// Steal time between two [`cpu_ticks`] readings, in % of all CPU time: on a shared host this
/// tells a slow run from a slow build.
fn steal_share(start: (u64, u64), end: (u64, u64)) -> f64 {
    let total = end.1.saturating_sub(start.1).max(1);
    100.0 * end.0.saturating_sub(start.0) as f64 / total as f64
}

/// User + system CPU time of this process so far (`/proc/self/stat`, in clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the 3rd, utime the 14th.
    let after_comm = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<u64> = after_comm
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// Decisions alone: the same nodes and pods, scheduled and assumed in memory.
fn decisions_per_sec(nodes: usize, pods: usize) -> f64 {
    let mut cache = Cache::default();
    for i in 0..nodes {
        let node: Node = serde_json::from_value(node_json(&format!("node-{i}"))).expect("node");
        cache.upsert_node(NodeSpec::from_node(node));
    }
    let infos: Vec<Arc<PodInfo>> = (0..pods)
        .map(|i| {
            Arc::new(PodInfo::from_pod(
                serde_json::from_value(pod_json(i)).expect("pod"),
            ))
        })
        .collect();
    let mut alg = Algorithm::new(Profile::default_profile(), 0, 12345);
    let start = Instant::now();
    for pod in infos {
        let slot = alg.schedule(&cache, &pod).expect("fits");
        let name = cache.slot(slot).name().to_owned();
        cache.assume(pod, &name);
    }
    pods as f64 / start.elapsed().as_secs_f64()
}

async fn run(nodes: usize) -> Row {
    let cluster = TestCluster::start().await;
    let client = client_for(&cluster).await;
    let setup_start = Instant::now();
    create_nodes(&client, nodes).await;
    create_pods(&client, PODS).await;
    let setup = setup_start.elapsed();

    // The counting watch skips managedFields, as the scheduler's does: the instrument's own
    // decoding shares the two cores with what it measures.
    let pods: Api<Lean<Pod>> = Api::namespaced(client.clone(), "default");
    let rv = pods
        .list(&ListParams::default().limit(1))
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();

    let shutdown = CancellationToken::new();
    let cpu_start = process_cpu();
    let steal_start = cpu_ticks();
    mark("start");
    let start = Instant::now();
    tokio::spawn(Scheduler::new(client.clone(), SchedulerOptions::default()).run(shutdown.clone()));
    let mut bound = HashSet::new();
    let mut first_bind = None;
    let deadline = Duration::from_secs(600);
    while bound.len() < PODS {
        let next =
            tokio::time::timeout(deadline.saturating_sub(start.elapsed()), stream.try_next()).await;
        let event = match next {
            Ok(Ok(Some(e))) => e,
            Ok(Ok(None)) => {
                // The server ended the watch: resume from the last state.
                let rv = pods
                    .list(&ListParams::default().limit(1))
                    .await
                    .expect("list")
                    .metadata
                    .resource_version
                    .unwrap_or_default();
                stream = pods
                    .watch(&WatchParams::default(), &rv)
                    .await
                    .expect("watch")
                    .boxed();
                continue;
            }
            Ok(Err(e)) => panic!("watch failed: {e}"),
            Err(_) => panic!(
                "only {} of {PODS} pods bound after {deadline:?}",
                bound.len()
            ),
        };
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event
            && p.0
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
        {
            first_bind.get_or_insert_with(|| start.elapsed());
            bound.insert(p.0.metadata.name.unwrap_or_default());
        }
    }
    let all_bound = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_start);
    let steal = steal_share(steal_start, cpu_ticks());
    mark("end");
    shutdown.cancel();
    Row {
        nodes,
        setup,
        first_bind: first_bind.unwrap_or_default(),
        all_bound,
        cpu,
        steal,
        decisions_per_sec: decisions_per_sec(nodes, PODS),
    }
}

/// The API's ceiling: the same pods bound round-robin by plain binding requests (64 in flight),
/// with no scheduler, no watch and no events.
async fn bindings_only_per_sec(nodes: usize) -> f64 {
    let cluster = TestCluster::start().await;
    let client = client_for(&cluster).await;
    create_nodes(&client, nodes).await;
    create_pods(&client, PODS).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    futures::stream::iter(0..PODS)
        .map(|i| {
            let api = api.clone();
            async move {
                let binding = json!({"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": format!("pod-{i}"), "namespace": "default"},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": format!("node-{}", i % nodes)}});
                api.create_subresource::<_, Value>("binding", &format!("pod-{i}"), &PostParams::default(), &binding)
                    .await
                    .expect("bind");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    PODS as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 5000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| nodes | pods | setup (s) | first bind (ms) | all bound (s) | pods/s (end to end) | pods/s after first bind | CPU per pod (µs) | host steal (%) | decisions/s (no API) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for nodes in sizes {
        let row = runtime.block_on(run(nodes));
        let total = row.all_bound.as_secs_f64();
        let steady = (PODS - 1) as f64 / (row.all_bound - row.first_bind).as_secs_f64();
        println!(
            "| {} | {PODS} | {:.1} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            row.nodes,
            row.setup.as_secs_f64(),
            row.first_bind.as_secs_f64() * 1000.0,
            total,
            PODS as f64 / total,
            steady,
            row.cpu.as_secs_f64() * 1e6 / PODS as f64,
            row.steal,
            row.decisions_per_sec,
        );
    }
    let ceiling = runtime.block_on(bindings_only_per_sec(1000));
    println!();
    println!(
        "binding requests alone (no scheduler, no watch, no events, 64 in flight): {ceiling:.0} pods/s"
    );
}
