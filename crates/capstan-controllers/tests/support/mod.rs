//! Shared support for the controller tests: a TestCluster with every controller running
//! ([`start`], or [`start_with`] for a custom [`ControllerConfig`]), polling with a deadline
//! ([`eventually`], [`gone`]), object creation, and a stand-in for the kubelet that sets pod
//! status through the `status` subresource (Running and Ready, Succeeded, Failed).

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use capstan_apiserver::testing::TestCluster;
use capstan_controllers::ControllerConfig;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub const NS: &str = "default";

pub struct Harness {
    pub cluster: TestCluster,
    pub client: kube::Client,
    shutdown: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A TestCluster with every controller running with the default configuration.
pub async fn start() -> Harness {
    start_with(ControllerConfig::default()).await
}

/// A TestCluster with every controller running with `config`.
pub async fn start_with(config: ControllerConfig) -> Harness {
    let cluster = TestCluster::start().await;
    let kubeconfig = Kubeconfig::from_yaml(&cluster.admin_kubeconfig()).expect("kubeconfig");
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(client_config).expect("client");
    let shutdown = CancellationToken::new();
    tokio::spawn(capstan_controllers::run_all(
        client.clone(),
        config,
        shutdown.clone(),
    ));
    Harness {
        cluster,
        client,
        shutdown,
    }
}

impl Harness {
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn create<K>(&self, value: serde_json::Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object: K = serde_json::from_value(value).expect("object");
        self.api::<K>()
            .create(&PostParams::default(), &object)
            .await
            .expect("create")
    }

    pub async fn merge_patch<K>(&self, name: &str, patch: serde_json::Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        self.api::<K>()
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch")
    }

    /// Active pods (not terminal, not being deleted) whose labels include `labels`.
    pub async fn pods(&self, labels: &str) -> Vec<Pod> {
        let mut pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(labels))
            .await
            .expect("list pods")
            .items;
        pods.retain(|p| p.metadata.deletion_timestamp.is_none());
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        pods
    }

    /// Plays kubelet: the pod is Running and Ready with its containers ready.
    pub async fn mark_ready(&self, pod: &Pod) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let now = format!(
            "{}",
            k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
        );
        let containers: Vec<serde_json::Value> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(|c| {
                json!({
                    "name": c.name, "image": c.image, "imageID": "", "ready": true, "started": true,
                    "restartCount": 0, "state": {"running": {"startedAt": now}},
                })
            })
            .collect();
        let status = json!({"status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            ],
            "containerStatuses": containers,
        }});
        let name = pod.metadata.name.as_deref().expect("pod name");
        match self
            .api::<Pod>()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await
        {
            Ok(_) => {}
            // The controller may delete it meanwhile.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("mark {name} ready: {e}"),
        }
    }

    /// Marks every not-yet-ready pod with these labels ready; returns how many it marked.
    pub async fn mark_all_ready(&self, labels: &str) -> usize {
        let pending: Vec<Pod> = self
            .pods(labels)
            .await
            .into_iter()
            .filter(|p| !is_ready(p))
            .collect();
        for pod in &pending {
            self.mark_ready(pod).await;
        }
        pending.len()
    }

    /// The events about the object `name` with `reason`, as messages.
    pub async fn events(&self, name: &str, reason: &str) -> Vec<String> {
        self.api::<Event>()
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
            })
            .filter_map(|e| e.message)
            .collect()
    }
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The uid of the pod's controller, if any.
pub fn controller_uid(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<String> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

/// Polls `check` until it yields a value, for at most 30 s (generous: tests share two cores).
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(30), check).await
}

/// Polls `check` until it yields a value, for at most `limit`.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pod template with one container.
pub fn template(labels: serde_json::Value, image: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "web", "image": image}]},
    })
}

/// Creates `value` (JSON of a `K`) through `api`.
pub async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

/// Creates the namespace `name`.
pub async fn create_namespace(client: &kube::Client, name: &str) {
    create(
        &Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone()),
        json!({"metadata": {"name": name}}),
    )
    .await;
}

/// Waits until `name` no longer exists.
pub async fn gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} to be deleted"), || async {
        api.get_opt(name)
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
}

/// Plays kubelet for a pod that ended: `phase` is `Succeeded` or `Failed`, the Ready condition False.
pub async fn finish_pod(pods: &Api<Pod>, name: &str, phase: &str) {
    let exit = if phase == "Succeeded" { 0 } else { 1 };
    let status = json!({"status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now_rfc3339()}],
        "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit, "reason": if exit == 0 { "Completed" } else { "Error" }}}}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap_or_else(|e| panic!("finish {name}: {e}"));
}

/// Now as RFC 3339, whole seconds.
pub fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    format!(
        "{}",
        k8s_openapi::jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
    )
}

/// A Ready node with room for pods (there is no kubelet: the test stands in for it).
pub async fn ready_node(client: &kube::Client, name: &str, labels: serde_json::Value) {
    let now = now_rfc3339();
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    create(
        &nodes,
        json!({"metadata": {"name": name, "labels": labels}}),
    )
    .await;
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "lastHeartbeatTime": now, "lastTransitionTime": now}],
            }})),
        )
        .await
        .expect("node status");
}
