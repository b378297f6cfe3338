//! Node lifecycle (Kubernetes' `node-lifecycle-controller` with its NoExecute taint manager).
//!
//! Nodes prove they are alive by renewing their Lease in `kube-node-lease` and by posting status.
//! When neither happened within the grace period, the node's conditions become `Unknown`
//! ("Kubelet stopped posting node status."), it is tainted `node.kubernetes.io/unreachable`
//! (`NoSchedule` and `NoExecute`; a `Ready=False` node gets `node.kubernetes.io/not-ready`), and its pods
//! are marked not ready. Pods that do not tolerate a NoExecute taint are deleted, at once or when their
//! `tolerationSeconds` run out; their controllers then create replacements elsewhere. When the node
//! reports again, the taints go. A cordoned node (`spec.unschedulable`) gets the
//! `node.kubernetes.io/unschedulable:NoSchedule` taint, removed again on uncordon.
//!
//! Level-triggered: every pass reads the whole current state from reflector caches.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

use crate::Context;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The NoSchedule taint of a cordoned node (`spec.unschedulable`), as `taintNodeByCondition` adds it.
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const MANAGER: &str = "node-lifecycle-controller";
/// How often the controller looks at every node.
const MONITOR_PERIOD: Duration = Duration::from_secs(1);

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn store_of<K>(api: Api<K>, shutdown: &CancellationToken) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let objects =
        watcher(api, watcher::Config::default()).modify(crate::util::strip_managed_fields);
    let stream = reflector::reflector(writer, objects)
        .default_backoff()
        .touched_objects();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                item = stream.next() => if item.is_none() { return },
                () = shutdown.cancelled() => return,
            }
        }
    });
    reader
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let nodes = store_of(Api::<Node>::all(client.clone()), &shutdown);
    let leases = store_of(
        Api::<Lease>::namespaced(client.clone(), "kube-node-lease"),
        &shutdown,
    );
    let pods = ctx.pods.store();
    tokio::select! {
        _ = nodes.wait_until_ready() => {}
        () = shutdown.cancelled() => return,
    }
    let _ = leases.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    loop {
        for node in nodes.state() {
            let span = tracing::debug_span!(
                "reconcile",
                controller = MANAGER,
                node = node.metadata.name.as_deref().unwrap_or_default()
            );
            let _enter = span.enter();
            if let Err(e) = monitor(&ctx, &node, &leases, &pods).await {
                tracing::warn!(error = %e, "node lifecycle pass failed");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(MONITOR_PERIOD) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The newest sign of life: the Lease renewal or the Ready condition's heartbeat.
fn last_heartbeat(node: &Node, lease: Option<&Lease>) -> Option<jiff::Timestamp> {
    let from_lease = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
    let from_status =
        ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    [from_lease, from_status, created]
        .into_iter()
        .flatten()
        .max()
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

async fn monitor(
    ctx: &Context,
    node: &Node,
    leases: &Store<Lease>,
    pods: &Store<Pod>,
) -> Result<(), kube::Error> {
    let Some(name) = node.metadata.name.clone() else {
        return Ok(());
    };
    let lease = leases.get(&reflector::ObjectRef::new(&name).within("kube-node-lease"));
    let silent_for = last_heartbeat(node, lease.as_deref())
        .map(|t| now().duration_since(t).as_secs_f64())
        .unwrap_or(f64::MAX);
    let grace = ctx.config.node_monitor_grace_period.as_secs_f64();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let ready = ready_condition(node).map(|c| c.status.clone());

    if silent_for > grace && ready.as_deref() != Some("Unknown") {
        tracing::info!(
            node = name,
            silent_for,
            "node stopped posting status; marking it NotReady"
        );
        mark_unknown(&nodes, node).await?;
        mark_pods_not_ready(ctx, &name, pods).await;
        return Ok(());
    }

    // Taints follow the Ready condition.
    let wanted: Option<&str> = match ready.as_deref() {
        Some("Unknown") => Some(UNREACHABLE),
        Some("False") => Some(NOT_READY),
        _ => None,
    };
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ours = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
    let mut desired: Vec<Taint> = taints.iter().filter(|t| !ours(t)).cloned().collect();
    if let Some(key) = wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            let existing = taints
                .iter()
                .find(|t| t.key == key && t.effect == effect)
                .cloned();
            desired.push(existing.unwrap_or(Taint {
                key: key.to_owned(),
                effect: effect.to_owned(),
                time_added: (effect == "NoExecute").then(|| {
                    Time(jiff::Timestamp::from_second(now().as_second()).unwrap_or(now()))
                }),
                value: None,
            }));
        }
    }
    // A cordoned node carries the unschedulable taint, an uncordoned one does not.
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let has_unschedulable = desired
        .iter()
        .any(|t| t.key == UNSCHEDULABLE && t.effect == "NoSchedule");
    if cordoned && !has_unschedulable {
        desired.push(Taint {
            key: UNSCHEDULABLE.to_owned(),
            effect: "NoSchedule".to_owned(),
            time_added: None,
            value: None,
        });
    } else if !cordoned && has_unschedulable {
        desired.retain(|t| !(t.key == UNSCHEDULABLE && t.effect == "NoSchedule"));
    }
    if desired != taints {
        tracing::info!(node = name, taint = ?wanted, "updating node taints");
        let patch = serde_json::json!({"spec": {"taints": desired}});
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }

    // The NoExecute taint manager: evict pods that do not tolerate the taint (any longer).
    for taint in desired
        .iter()
        .filter(|t| t.effect == "NoExecute" && ours(t))
    {
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or_else(now);
        let elapsed = now().duration_since(added).as_secs_f64();
        for pod in pods
            .state()
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
        {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let evict = match toleration_seconds(pod, taint) {
                Tolerated::No => true,
                Tolerated::Forever => false,
                Tolerated::For(seconds) => elapsed >= seconds as f64,
            };
            if evict {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                tracing::info!(node = name, pod = %format!("{ns}/{pod_name}"), "evicting pod from a tainted node");
                let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
                match api.delete(&pod_name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

enum Tolerated {
    No,
    Forever,
    For(i64),
}

/// How long `pod` tolerates `taint`, as the taint manager reads its tolerations.
fn toleration_seconds(pod: &Pod, taint: &Taint) -> Tolerated {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut best: Option<Tolerated> = None;
    for t in tolerations {
        let key_matches = match t.operator.as_deref() {
            Some("Exists") => t
                .key
                .as_deref()
                .is_none_or(|k| k.is_empty() || k == taint.key),
            _ => {
                t.key.as_deref() == Some(taint.key.as_str())
                    && t.value.as_deref().unwrap_or_default()
                        == taint.value.as_deref().unwrap_or_default()
            }
        };
        let effect_matches = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == taint.effect);
        if !(key_matches && effect_matches) {
            continue;
        }
        let this = match t.toleration_seconds {
            None => Tolerated::Forever,
            Some(s) => Tolerated::For(s.max(0)),
        };
        best = Some(match (best, this) {
            (Some(Tolerated::Forever), _) | (_, Tolerated::Forever) => Tolerated::Forever,
            (Some(Tolerated::For(a)), Tolerated::For(b)) => Tolerated::For(a.max(b)),
            (_, other) => other,
        });
    }
    best.unwrap_or(Tolerated::No)
}

/// Sets every standard condition to Unknown, as kube does when the kubelet goes silent.
async fn mark_unknown(nodes: &Api<Node>, node: &Node) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let stamp = Time(jiff::Timestamp::from_second(now().as_second()).unwrap_or(now()));
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) => {
                if c.status != "Unknown" {
                    c.last_transition_time = Some(stamp.clone());
                }
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
            }
            None => conditions.push(NodeCondition {
                type_: kind.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_transition_time: Some(stamp.clone()),
                last_heartbeat_time: None,
            }),
        }
    }
    let patch = serde_json::json!({"status": {"conditions": conditions}});
    nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

/// Marks the pods of a silent node not ready, so Services stop sending them traffic.
async fn mark_pods_not_ready(ctx: &Context, node: &str, pods: &Store<Pod>) {
    for pod in pods
        .state()
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
    {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status == "True")
            .unwrap_or(false);
        if !ready {
            continue;
        }
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "Ready", "status": "False", "reason": "NodeNotReady",
            "lastTransitionTime": jiff::Timestamp::from_second(now().as_second()).map(|t| t.to_string()).unwrap_or_default(),
        }]}});
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "could not mark pod not ready");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_apiserver::AdmissionConfig;
    use capstan_apiserver::testing::TestCluster;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use kube::api::PostParams;

    async fn client(cluster: &TestCluster) -> kube::Client {
        let kubeconfig =
            kube::config::Kubeconfig::from_yaml(&cluster.admin_kubeconfig()).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    /// What a kubelet does: post Ready=True with a fresh heartbeat and renew the Lease.
    async fn heartbeat(client: &kube::Client, node: &str) {
        let stamp = jiff::Timestamp::from_second(now().as_second())
            .expect("time")
            .to_string();
        let nodes: Api<Node> = Api::all(client.clone());
        let status = serde_json::json!({"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
        }]}});
        nodes
            .patch_status(node, &PatchParams::default(), &Patch::Strategic(&status))
            .await
            .expect("node status");
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let lease = Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(node.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node.into()),
                renew_time: Some(MicroTime(now())),
                lease_duration_seconds: Some(40),
                ..Default::default()
            }),
        };
        match leases.get_opt(node).await.expect("get lease") {
            None => {
                leases
                    .create(&PostParams::default(), &lease)
                    .await
                    .expect("create lease");
            }
            Some(_) => {
                let patch = serde_json::json!({"spec": {"renewTime": MicroTime(now())}});
                leases
                    .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .expect("renew lease");
            }
        }
    }

    async fn until<T>(
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_node_becomes_unknown_is_tainted_and_its_pods_are_evicted_then_recovers() {
        let cluster = TestCluster::start_with(AdmissionConfig {
            not_ready_toleration_seconds: 2,
            unreachable_toleration_seconds: 2,
        })
        .await;
        let client = client(&cluster).await;
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        }))
        .expect("node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
        heartbeat(&client, "n1").await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        for (name, tolerate_forever) in [("evicted", false), ("stays", true)] {
            let mut pod = serde_json::json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
            });
            if tolerate_forever {
                pod["spec"]["tolerations"] = serde_json::json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]);
            }
            pods.create(
                &PostParams::default(),
                &serde_json::from_value(pod).expect("pod"),
            )
            .await
            .expect("create pod");
        }

        let ctx = Arc::new(Context {
            client: client.clone(),
            config: crate::ControllerConfig {
                node_monitor_grace_period: Duration::from_secs(2),
                ..Default::default()
            },
            pods: crate::util::shared::SharedPods::new(),
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(ctx.pods.clone().run(client.clone(), shutdown.clone()));
        tokio::spawn(run(ctx, shutdown.clone()));

        // No more heartbeats: within grace + 5 s the node is Unknown and tainted.
        let node = until(
            "the node to become Unknown and tainted",
            Duration::from_secs(7),
            async || {
                let node = nodes.get("n1").await.ok()?;
                let ready = ready_condition(&node)?.clone();
                let taints = node.spec.as_ref()?.taints.clone().unwrap_or_default();
                (ready.status == "Unknown"
                    && taints
                        .iter()
                        .any(|t| t.key == UNREACHABLE && t.effect == "NoExecute"))
                .then_some(node)
            },
        )
        .await;
        let ready = ready_condition(&node).expect("ready condition");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        assert!(
            taints
                .iter()
                .any(|t| t.key == UNREACHABLE && t.effect == "NoSchedule"),
            "{taints:?}"
        );

        // The pod with the default 2 s toleration is evicted within toleration + 10 s; the one that
        // tolerates the taint forever stays.
        until(
            "the pod to be evicted",
            Duration::from_secs(12),
            async || match pods.get_opt("evicted").await.ok()? {
                None => Some(()),
                Some(p) => p.metadata.deletion_timestamp.map(|_| ()),
            },
        )
        .await;
        let stays = pods.get("stays").await.expect("get pod");
        assert!(
            stays.metadata.deletion_timestamp.is_none(),
            "a pod tolerating the taint forever stays"
        );

        // The kubelet comes back: the taints go.
        heartbeat(&client, "n1").await;
        until(
            "the taints to be removed",
            Duration::from_secs(10),
            async || {
                let node = nodes.get("n1").await.ok()?;
                let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
                (!taints
                    .iter()
                    .any(|t| t.key == UNREACHABLE || t.key == NOT_READY))
                .then_some(())
            },
        )
        .await;
        shutdown.cancel();
    }

    #[test]
    fn tolerations_are_read_like_the_taint_manager() {
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            time_added: None,
            value: None,
        };
        let pod = |tolerations: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}})).expect("pod")
        };
        assert!(matches!(
            toleration_seconds(&pod(serde_json::json!([])), &taint),
            Tolerated::No
        ));
        assert!(matches!(
            toleration_seconds(
                &pod(
                    serde_json::json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
                ),
                &taint
            ),
            Tolerated::For(300)
        ));
        assert!(matches!(
            toleration_seconds(&pod(serde_json::json!([{"operator": "Exists"}])), &taint),
            Tolerated::Forever
        ));
        assert!(matches!(
            toleration_seconds(
                &pod(
                    serde_json::json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"}])
                ),
                &taint
            ),
            Tolerated::No
        ));
    }
}
