//! The scheduler against a real in-process API server: nodes and pods are created through the API,
//! the scheduler runs as a client, and the tests assert what the API shows (spec.nodeName, events,
//! the PodScheduled condition). Every wait is bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_apiserver::testing::TestCluster;
use capstan_scheduler::{Scheduler, SchedulerOptions};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

struct Env {
    _cluster: TestCluster,
    client: Client,
    shutdown: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn client_for(cluster: &TestCluster) -> Client {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&cluster.admin_kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

/// A cluster with a running scheduler.
async fn env() -> Env {
    let cluster = TestCluster::start().await;
    let client = client_for(&cluster).await;
    let shutdown = CancellationToken::new();
    tokio::spawn(Scheduler::new(client.clone(), SchedulerOptions::default()).run(shutdown.clone()));
    Env {
        _cluster: cluster,
        client,
        shutdown,
    }
}

/// A Ready node (capacity = allocatable) with a hostname label; `extra_spec` is merged into spec.
async fn create_node(client: &Client, name: &str, cpu: &str, labels: Value, spec: Value) {
    let mut all_labels: BTreeMap<String, String> = serde_json::from_value(labels).expect("labels");
    all_labels.insert("kubernetes.io/hostname".into(), name.into());
    let status = json!({
        "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
    });
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": spec,
        "status": status,
    }))
    .expect("node");
    let api: Api<Node> = Api::all(client.clone());
    api.create(&PostParams::default(), &node)
        .await
        .expect("create node");
    // Whether or not create kept the status, make sure it is there (a kubelet would post it).
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .expect("node status");
}

fn pod_json(name: &str, cpu: &str, extra_spec: Value) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}
    });
    if let (Some(spec), Value::Object(extra)) = (pod["spec"].as_object_mut(), extra_spec) {
        spec.extend(extra);
    }
    pod
}

async fn create_pod(client: &Client, pod: Value) {
    let pod: Pod = serde_json::from_value(pod).expect("pod");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

async fn node_of(client: &Client, name: &str) -> Option<String> {
    let pod = Api::<Pod>::namespaced(client.clone(), "default")
        .get(name)
        .await
        .ok()?;
    pod.spec?.node_name
}

/// Waits until every pod is bound; returns their nodes.
async fn wait_bound(client: &Client, names: &[&str]) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut nodes = Vec::new();
        for name in names {
            match node_of(client, name).await {
                Some(n) => nodes.push(n),
                None => break,
            }
        }
        if nodes.len() == names.len() {
            return nodes;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods {names:?} not all bound in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for an event of `reason` about `pod` and returns its message.
async fn wait_event(client: &Client, pod: &str, reason: &str) -> Event {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let events = api.list(&ListParams::default()).await.expect("list events");
        if let Some(e) = events.items.into_iter().find(|e| {
            e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason)
        }) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {reason} event for {pod}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn three_nodes(client: &Client) {
    for name in ["node-1", "node-2", "node-3"] {
        create_node(client, name, "4", json!({}), json!({})).await;
    }
}

fn counts(nodes: &[String]) -> BTreeMap<&str, usize> {
    let mut m = BTreeMap::new();
    for n in nodes {
        *m.entry(n.as_str()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_a_pod_and_records_a_scheduled_event() {
    let env = env().await;
    three_nodes(&env.client).await;
    create_pod(&env.client, pod_json("web", "100m", json!({}))).await;
    let nodes = wait_bound(&env.client, &["web"]).await;
    assert!(nodes[0].starts_with("node-"));
    let event = wait_event(&env.client, "web", "Scheduled").await;
    assert_eq!(
        event.message.as_deref(),
        Some(format!("Successfully assigned default/web to {}", nodes[0]).as_str())
    );
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert_eq!(
        event.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(
        event.source.and_then(|s| s.component).as_deref(),
        Some("default-scheduler")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_bigger_than_any_node_stays_pending_until_a_big_node_arrives() {
    let env = env().await;
    three_nodes(&env.client).await;
    create_pod(&env.client, pod_json("big", "6", json!({}))).await;
    let event = wait_event(&env.client, "big", "FailedScheduling").await;
    assert_eq!(
        event.message.as_deref(),
        Some("0/3 nodes are available: 3 Insufficient cpu.")
    );
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    // The PodScheduled condition tells the same story.
    let api: Api<Pod> = Api::namespaced(env.client.clone(), "default");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let pod = api.get("big").await.expect("pod");
        let cond = pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "PodScheduled");
        if let Some(c) = cond {
            assert_eq!(c.status, "False");
            assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
            assert_eq!(
                c.message.as_deref(),
                Some("0/3 nodes are available: 3 Insufficient cpu.")
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no PodScheduled condition"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(node_of(&env.client, "big").await, None);
    // A node that fits arrives: the pod is retried (after its 1 s backoff) and bound there.
    create_node(&env.client, "node-big", "16", json!({}), json!({})).await;
    assert_eq!(wait_bound(&env.client, &["big"]).await, vec!["node-big"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cordoned_node_is_never_chosen() {
    let env = env().await;
    create_node(
        &env.client,
        "node-1",
        "4",
        json!({}),
        json!({"unschedulable": true}),
    )
    .await;
    create_node(&env.client, "node-2", "4", json!({}), json!({})).await;
    create_node(&env.client, "node-3", "4", json!({}), json!({})).await;
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    for n in &names {
        create_pod(&env.client, pod_json(n, "100m", json!({}))).await;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let nodes = wait_bound(&env.client, &refs).await;
    assert!(nodes.iter().all(|n| n != "node-1"), "{nodes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_picks_the_labelled_node() {
    let env = env().await;
    create_node(&env.client, "node-1", "4", json!({}), json!({})).await;
    create_node(
        &env.client,
        "node-2",
        "4",
        json!({"disktype": "ssd"}),
        json!({}),
    )
    .await;
    create_node(&env.client, "node-3", "4", json!({}), json!({})).await;
    for i in 0..4 {
        create_pod(
            &env.client,
            pod_json(
                &format!("ssd-{i}"),
                "100m",
                json!({"nodeSelector": {"disktype": "ssd"}}),
            ),
        )
        .await;
    }
    let nodes = wait_bound(&env.client, &["ssd-0", "ssd-1", "ssd-2", "ssd-3"]).await;
    assert!(nodes.iter().all(|n| n == "node-2"), "{nodes:?}");
    create_pod(
        &env.client,
        pod_json("hdd", "100m", json!({"nodeSelector": {"disktype": "hdd"}})),
    )
    .await;
    let event = wait_event(&env.client, "hdd", "FailedScheduling").await;
    assert_eq!(
        event.message.as_deref(),
        Some("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tainted_nodes_take_only_tolerating_pods() {
    let env = env().await;
    let taint = json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]});
    create_node(&env.client, "node-1", "4", json!({}), taint.clone()).await;
    create_node(&env.client, "node-2", "4", json!({}), taint).await;
    create_node(&env.client, "node-3", "4", json!({}), json!({})).await;
    for i in 0..4 {
        create_pod(
            &env.client,
            pod_json(&format!("plain-{i}"), "100m", json!({})),
        )
        .await;
    }
    let nodes = wait_bound(&env.client, &["plain-0", "plain-1", "plain-2", "plain-3"]).await;
    assert!(nodes.iter().all(|n| n == "node-3"), "{nodes:?}");
    // With node-3 full of... nothing in particular: a pod restricted away from node-3 and without
    // the toleration has nowhere to go, and the message names the taint.
    create_pod(&env.client, pod_json("stray", "100m", json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node-3"]}]}]}}}}))).await;
    let event = wait_event(&env.client, "stray", "FailedScheduling").await;
    assert_eq!(
        event.message.as_deref(),
        Some(
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
              2 node(s) had untolerated taint {dedicated: gpu}."
        )
    );
    create_pod(&env.client, pod_json("tolerant", "100m", json!({
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
        "nodeSelector": {"kubernetes.io/hostname": "node-1"}}))).await;
    assert_eq!(wait_bound(&env.client, &["tolerant"]).await, vec!["node-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_conflicts_keep_pods_apart() {
    let env = env().await;
    create_node(&env.client, "node-1", "4", json!({}), json!({})).await;
    create_node(&env.client, "node-2", "4", json!({}), json!({})).await;
    let with_port = |name: &str| {
        let mut p = pod_json(name, "100m", json!({}));
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        p
    };
    create_pod(&env.client, with_port("hp-1")).await;
    create_pod(&env.client, with_port("hp-2")).await;
    let nodes = wait_bound(&env.client, &["hp-1", "hp-2"]).await;
    assert_ne!(nodes[0], nodes[1]);
    create_pod(&env.client, with_port("hp-3")).await;
    let event = wait_event(&env.client, "hp-3", "FailedScheduling").await;
    assert_eq!(
        event.message.as_deref(),
        Some(
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_anti_affinity_spreads_replicas_one_per_node() {
    let env = env().await;
    three_nodes(&env.client).await;
    let replica = |name: &str| {
        let mut p = pod_json(
            name,
            "100m",
            json!({"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "db"}},
                "topologyKey": "kubernetes.io/hostname"}]}}}),
        );
        p["metadata"]["labels"] = json!({"app": "db"});
        p
    };
    for i in 0..3 {
        create_pod(&env.client, replica(&format!("db-{i}"))).await;
    }
    let nodes = wait_bound(&env.client, &["db-0", "db-1", "db-2"]).await;
    assert_eq!(counts(&nodes).len(), 3, "{nodes:?}");
    create_pod(&env.client, replica("db-3")).await;
    let event = wait_event(&env.client, "db-3", "FailedScheduling").await;
    assert_eq!(
        event.message.as_deref(),
        Some("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_one_owner_spread_evenly_by_score() {
    let env = env().await;
    three_nodes(&env.client).await;
    let names: Vec<String> = (0..6).map(|i| format!("rs-pod-{i}")).collect();
    for n in &names {
        let mut p = pod_json(n, "10m", json!({}));
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "web-5d4f", "uid": "0b6c3c1e-0000-4000-8000-000000000001", "controller": true}]);
        create_pod(&env.client, p).await;
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let nodes = wait_bound(&env.client, &refs).await;
    let per_node = counts(&nodes);
    assert_eq!(per_node.len(), 3, "{nodes:?}");
    assert!(per_node.values().all(|&c| c == 2), "{per_node:?}");
}

async fn create_volume(client: &Client, value: Value) {
    let pv: k8s_openapi::api::core::v1::PersistentVolume =
        serde_json::from_value(value).expect("volume");
    Api::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .expect("create volume");
}

async fn create_claim(client: &Client, value: Value) {
    let pvc: k8s_openapi::api::core::v1::PersistentVolumeClaim =
        serde_json::from_value(value).expect("claim");
    Api::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pvc)
        .await
        .expect("create claim");
}

fn with_claim(claim: &str) -> Value {
    json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_follows_its_claims_local_volume_and_waits_for_a_missing_claim() {
    let env = env().await;
    three_nodes(&env.client).await;
    // A claim bound to a volume that lives on node-2.
    create_volume(
        &env.client,
        json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pv-data"},
            "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/tmp/pv-data"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-2"]}]}]}},
            },
        }),
    )
    .await;
    create_claim(
        &env.client,
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "pv-data"},
        }),
    )
    .await;
    for i in 0..3 {
        let name = format!("db-{i}");
        create_pod(&env.client, pod_json(&name, "100m", with_claim("data"))).await;
    }
    let nodes = wait_bound(&env.client, &["db-0", "db-1", "db-2"]).await;
    assert_eq!(nodes, ["node-2", "node-2", "node-2"]);

    // A pod naming a claim that does not exist waits, with kube's reason, until the claim appears.
    create_pod(&env.client, pod_json("late", "100m", with_claim("later"))).await;
    let event = wait_event(&env.client, "late", "FailedScheduling").await;
    let message = event.message.unwrap_or_default();
    assert!(
        message.contains("persistentvolumeclaim \"later\" not found"),
        "{message}"
    );
    assert_eq!(node_of(&env.client, "late").await, None);
    create_claim(&env.client, json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "later", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .await;
    // Unbound (its class binds on first use): any node will do.
    let nodes = wait_bound(&env.client, &["late"]).await;
    assert!(nodes[0].starts_with("node-"), "{nodes:?}");
}
