//! End-to-end: workloads through the real `capstan server --disable-agent` and the real kubectl.
//!
//! There is no kubelet: nodes are plain Node objects and a stand-in ([`FakeNodes`], a thread with a
//! kube client) plays their kubelets: it renews each node's Lease, marks bound pods Running and
//! Ready (Job pods Succeeded), and finishes the deletion of terminating pods. Silencing a node
//! stops all of that for it, as if it had lost power.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Cluster, assert_contains};

const IMAGE: &str = "127.0.0.1:5000/busybox:latest";
const IMAGE_2: &str = "127.0.0.1:5000/busybox:1.36";

/// Kubelet stand-ins for plain Node objects, stopped on drop.
struct FakeNodes {
    stop: Arc<AtomicBool>,
    silent: Arc<Mutex<HashSet<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeNodes {
    /// Creates Ready nodes `names` (4 CPUs, 8 GiB, 110 pods) with `kubectl apply` and starts
    /// playing their kubelets.
    fn start(k: &Cluster, names: &[&str]) -> FakeNodes {
        for name in names {
            k.apply_stdin(&format!(
                "apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels:
    kubernetes.io/hostname: {name}
status:
  capacity: {{cpu: '4', memory: 8Gi, pods: '110'}}
  allocatable: {{cpu: '4', memory: 8Gi, pods: '110'}}
  conditions:
  - type: Ready
    status: 'True'
    reason: KubeletReady
    message: kubelet is posting ready status
"
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let silent = Arc::new(Mutex::new(HashSet::new()));
        let kubeconfig = std::fs::read_to_string(k.kubeconfig()).expect("kubeconfig");
        let nodes: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let (stop2, silent2) = (stop.clone(), silent.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(play_kubelets(kubeconfig, nodes, stop2, silent2));
        });
        FakeNodes {
            stop,
            silent,
            thread: Some(thread),
        }
    }

    /// The node stops renewing its Lease and its pods are left alone.
    fn silence(&self, node: &str) {
        self.silent.lock().expect("lock").insert(node.to_owned());
    }
}

impl Drop for FakeNodes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn play_kubelets(
    kubeconfig: String,
    nodes: Vec<String>,
    stop: Arc<AtomicBool>,
    silent: Arc<Mutex<HashSet<String>>>,
) {
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let all_pods: Api<Pod> = Api::all(client.clone());
    while !stop.load(Ordering::SeqCst) {
        let quiet = silent.lock().expect("lock").clone();
        let now = k8s_openapi::jiff::Timestamp::now();
        for node in nodes.iter().filter(|n| !quiet.contains(*n)) {
            let renew = json!({"spec": {"renewTime": MicroTime(now)}});
            match leases
                .patch(node, &PatchParams::default(), &Patch::Merge(&renew))
                .await
            {
                Ok(_) => {}
                Err(_) => {
                    let lease = Lease {
                        metadata: ObjectMeta {
                            name: Some(node.clone()),
                            ..Default::default()
                        },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(node.clone()),
                            lease_duration_seconds: Some(40),
                            renew_time: Some(MicroTime(now)),
                            ..Default::default()
                        }),
                    };
                    let _ = leases.create(&PostParams::default(), &lease).await;
                }
            }
        }
        if let Ok(list) = all_pods.list(&ListParams::default()).await {
            for pod in list.items {
                let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                    continue;
                };
                if !nodes.contains(&node) || quiet.contains(&node) {
                    continue;
                }
                play_pod(&client, &pod, now).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// One kubelet step for a bound pod.
async fn play_pod(client: &kube::Client, pod: &Pod, now: k8s_openapi::jiff::Timestamp) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if pod.metadata.deletion_timestamp.is_some() {
        let _ = api
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let is_job = pod
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key("batch.kubernetes.io/job-name"));
    let stamp = k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
    let status = if is_job {
        if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
            return;
        }
        json!({"status": {"phase": "Succeeded", "conditions": [
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": stamp.to_string()}]}})
    } else {
        if ready {
            return;
        }
        json!({"status": {"phase": "Running", "podIP": "10.42.0.10", "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": stamp.to_string()},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": stamp.to_string()},
            {"type": "Ready", "status": "True", "lastTransitionTime": stamp.to_string()},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp.to_string()}]}})
    };
    let _ = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await;
}

/// Polls `check` every 200 ms until it yields a value, for at most `limit`.
fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (name, node, phase, deleting) of the pods labelled `selector` in `default`.
fn pods(k: &Cluster, selector: &str) -> Vec<(String, String, String, bool)> {
    let list = k.get_json(&["pods", "-l", selector]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["status"]["phase"].as_str().unwrap_or_default().to_owned(),
                !p["metadata"]["deletionTimestamp"].is_null(),
            )
        })
        .collect()
}

/// Waits until `n` live pods of `selector` are bound and Running; returns them.
fn running_pods(k: &Cluster, selector: &str, n: usize) -> Vec<(String, String, String, bool)> {
    eventually(
        &format!("{n} running pods {selector}"),
        Duration::from_secs(60),
        || {
            let live: Vec<_> = pods(k, selector).into_iter().filter(|p| !p.3).collect();
            (live.len() == n && live.iter().all(|p| !p.1.is_empty() && p.2 == "Running"))
                .then_some(live)
        },
    )
}

fn replica_sets(k: &Cluster) -> Vec<String> {
    k.ok(&["get", "rs", "-l", "app=web", "-o", "name"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn image(k: &Cluster) -> String {
    k.jsonpath(
        &["deployment", "web"],
        "{.spec.template.spec.containers[0].image}",
    )
}

fn rollout_status(k: &Cluster) {
    let out = k.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    assert_contains(&out, "successfully rolled out");
}

#[test]
fn deployment_scale_rollout_history_undo_pause_and_restart() {
    let k = Cluster::start();
    let _nodes = FakeNodes::start(&k, &["n1", "n2", "n3"]);
    let out = k.ok(&[
        "create",
        "deployment",
        "web",
        &format!("--image={IMAGE}"),
        "--replicas=3",
    ]);
    assert_eq!(out.trim(), "deployment.apps/web created");
    let running = running_pods(&k, "app=web", 3);
    let nodes: HashSet<&str> = running.iter().map(|p| p.1.as_str()).collect();
    assert!(
        nodes.iter().all(|n| ["n1", "n2", "n3"].contains(n)),
        "{running:?}"
    );
    rollout_status(&k);

    assert_eq!(
        k.ok(&["scale", "deployment/web", "--replicas=4"]).trim(),
        "deployment.apps/web scaled"
    );
    running_pods(&k, "app=web", 4);
    rollout_status(&k);

    let out = k.ok(&["set", "image", "deployment/web", &format!("*={IMAGE_2}")]);
    assert_contains(&out, "deployment.apps/web image updated");
    rollout_status(&k);
    assert_eq!(replica_sets(&k).len(), 2);
    let history = k.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    running_pods(&k, "app=web", 4);

    assert_contains(&k.ok(&["rollout", "undo", "deployment/web"]), "rolled back");
    rollout_status(&k);
    assert_eq!(image(&k), IMAGE);
    assert_eq!(
        replica_sets(&k).len(),
        2,
        "undo re-uses the first ReplicaSet"
    );

    assert_contains(&k.ok(&["rollout", "pause", "deployment/web"]), "paused");
    k.ok(&["set", "image", "deployment/web", &format!("*={IMAGE_2}")]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        replica_sets(&k).len(),
        2,
        "a paused deployment does not roll out"
    );
    assert_contains(&k.ok(&["rollout", "resume", "deployment/web"]), "resumed");
    rollout_status(&k);

    assert_contains(
        &k.ok(&["rollout", "restart", "deployment/web"]),
        "restarted",
    );
    rollout_status(&k);
    assert_eq!(replica_sets(&k).len(), 3, "restart makes a new ReplicaSet");
    let restarted = k.jsonpath(
        &["deployment", "web"],
        "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    );
    assert!(!restarted.is_empty());
}

#[test]
fn cordon_and_drain_through_evictions_held_back_by_a_disruption_budget() {
    let k = Cluster::start();
    let _nodes = FakeNodes::start(&k, &["n1", "n2"]);
    k.ok(&[
        "create",
        "deployment",
        "web",
        &format!("--image={IMAGE}"),
        "--replicas=2",
    ]);
    let running = running_pods(&k, "app=web", 2);

    assert_eq!(k.ok(&["cordon", "n1"]).trim(), "node/n1 cordoned");
    assert_eq!(k.jsonpath(&["node", "n1"], "{.spec.unschedulable}"), "true");
    eventually("the unschedulable taint", Duration::from_secs(20), || {
        k.jsonpath(&["node", "n1"], "{.spec.taints[*].key}")
            .contains("node.kubernetes.io/unschedulable")
            .then_some(())
    });
    assert_eq!(k.ok(&["uncordon", "n1"]).trim(), "node/n1 uncordoned");
    eventually("the taint to go", Duration::from_secs(20), || {
        (!k.jsonpath(&["node", "n1"], "{.spec.taints[*].key}")
            .contains("unschedulable"))
        .then_some(())
    });

    k.ok(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=2",
    ]);
    let victim = running[0].1.clone();
    let out = k.run(&[
        "drain",
        &victim,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=6s",
    ]);
    assert!(!out.status.success(), "drain must wait for the budget");
    assert_contains(
        &String::from_utf8_lossy(&out.stderr),
        "Cannot evict pod as it would violate the pod's disruption budget",
    );
    assert_eq!(
        k.jsonpath(&["node", &victim], "{.spec.unschedulable}"),
        "true"
    );
    assert_eq!(
        pods(&k, "app=web").iter().filter(|p| !p.3).count(),
        2,
        "nothing evicted"
    );

    k.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":1}}"#,
    ]);
    let out = k.ok(&[
        "drain",
        &victim,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=60s",
    ]);
    assert_contains(&out, &format!("node/{victim} drained"));
    let other = if victim == "n1" { "n2" } else { "n1" };
    let after = running_pods(&k, "app=web", 2);
    assert!(
        after.iter().all(|p| p.1 == other),
        "all pods moved off {victim}: {after:?}"
    );
}

#[test]
fn an_unreachable_node_is_tainted_and_its_pods_replaced_elsewhere() {
    let k = Cluster::start_with_flags(&[
        "--node-monitor-grace-period",
        "3s",
        "--default-unreachable-toleration-seconds",
        "2",
    ]);
    let nodes = FakeNodes::start(&k, &["n1", "n2", "n3"]);
    k.ok(&[
        "create",
        "deployment",
        "web",
        &format!("--image={IMAGE}"),
        "--replicas=3",
    ]);
    let running = running_pods(&k, "app=web", 3);
    let victim = running[0].1.clone();
    let on_victim: Vec<String> = running
        .iter()
        .filter(|p| p.1 == victim)
        .map(|p| p.0.clone())
        .collect();

    let silenced = Instant::now();
    nodes.silence(&victim);
    eventually("Ready Unknown", Duration::from_secs(3 + 5), || {
        (k.jsonpath(
            &["node", &victim],
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        ) == "Unknown")
            .then_some(())
    });
    eventually(
        "the unreachable NoExecute taint",
        Duration::from_secs(5),
        || {
            k.jsonpath(
                &["node", &victim],
                "{range .spec.taints[*]}{.key}:{.effect} {end}",
            )
            .contains("node.kubernetes.io/unreachable:NoExecute")
            .then_some(())
        },
    );
    let tainted = Instant::now();
    let replaced = eventually(
        "replacements on other nodes",
        Duration::from_secs(2 + 10),
        || {
            let all = pods(&k, "app=web");
            let evicted = on_victim.iter().all(|name| {
                all.iter().any(|p| &p.0 == name && p.3) || !all.iter().any(|p| &p.0 == name)
            });
            let live: Vec<_> = all.iter().filter(|p| !p.3).collect();
            (evicted && live.len() == 3 && live.iter().all(|p| !p.1.is_empty() && p.1 != victim))
                .then_some(live.len())
        },
    );
    assert_eq!(replaced, 3);
    eprintln!(
        "unknown+tainted after {:?}, replaced {:?} after the taint",
        tainted - silenced,
        tainted.elapsed()
    );
}

#[test]
fn jobs_complete_and_cronjobs_are_accepted() {
    let k = Cluster::start();
    let _nodes = FakeNodes::start(&k, &["n1"]);
    assert_eq!(
        k.ok(&["create", "job", "calc", &format!("--image={IMAGE}")])
            .trim(),
        "job.batch/calc created"
    );
    let out = k.ok(&[
        "wait",
        "--for=condition=complete",
        "job/calc",
        "--timeout=60s",
    ]);
    assert_eq!(out.trim(), "job.batch/calc condition met");
    assert_eq!(k.jsonpath(&["job", "calc"], "{.status.succeeded}"), "1");

    let out = k.ok(&[
        "create",
        "cronjob",
        "tick",
        &format!("--image={IMAGE}"),
        "--schedule=*/5 * * * *",
    ]);
    assert_eq!(out.trim(), "cronjob.batch/tick created");
    assert_eq!(
        k.jsonpath(&["cronjob", "tick"], "{.spec.schedule}"),
        "*/5 * * * *"
    );
    let table = k.ok(&["get", "cronjobs"]);
    assert_contains(&table, "tick");
}

/// `--disable-scheduler` and `--disable-controller-manager` (as k3s): this server neither elects
/// nor runs them, so a Deployment gets no ReplicaSet and a pod stays unbound, while the API works.
#[test]
fn disabled_scheduler_and_controller_manager_do_not_run() {
    let k = Cluster::start_with_flags(&["--disable-scheduler", "--disable-controller-manager"]);
    k.ok(&["create", "deployment", "web", "--image", IMAGE]);
    k.ok(&["run", "lone", "--image", IMAGE, "--restart=Never"]);
    // Both would hold their Lease and act within a second of start-up if they ran.
    std::thread::sleep(Duration::from_secs(3));
    let leases = k.ok(&["get", "leases", "-n", "kube-system", "-o", "name"]);
    assert!(!leases.contains("kube-scheduler"), "{leases}");
    assert!(!leases.contains("kube-controller-manager"), "{leases}");
    let replicasets = k.ok(&["get", "replicasets", "-o", "name"]);
    assert_eq!(replicasets.trim(), "", "{replicasets}");
    let pod = k.ok(&[
        "get",
        "pod",
        "lone",
        "-o",
        "jsonpath={.spec.nodeName}|{.status.conditions}",
    ]);
    assert_eq!(
        pod, "|",
        "the pod was neither bound nor marked unschedulable"
    );
}
