//! The DaemonSet controller on a TestCluster (nodes are plain Node objects; the test plays kubelet):
//! one pinned pod per eligible node, node selectors and taints, pods following nodes that come and
//! go, RollingUpdate within maxUnavailable, and status counts.

mod support;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::{Harness, eventually, ready_node, start, template};

async fn daemonset(h: &Harness, name: &str, pod_spec_extra: serde_json::Value) -> DaemonSet {
    let mut tmpl = template(json!({"app": name}), "agent:1");
    if let (Some(spec), Some(extra)) = (tmpl["spec"].as_object_mut(), pod_spec_extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    h.create(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": tmpl},
    }))
    .await
}

fn target(pod: &Pod) -> Option<String> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .first()?
        .match_fields
        .as_ref()?
        .first()?
        .values
        .as_ref()?
        .first()
        .cloned()
}

/// Waits until the daemon pods target exactly `nodes`.
async fn on_nodes(h: &Harness, app: &str, nodes: &[&str]) -> Vec<Pod> {
    eventually(&format!("daemon pods on {nodes:?}"), || async {
        let pods = h.pods(&format!("app={app}")).await;
        let mut targets: Vec<String> = pods.iter().filter_map(target).collect();
        targets.sort();
        (targets == nodes).then_some(pods)
    })
    .await
}

fn image(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.containers.first()?.image.clone()
}

#[tokio::test]
async fn one_pinned_pod_per_eligible_node_following_labels_taints_and_nodes() {
    let h = start().await;
    let nodes: Api<Node> = Api::all(h.client.clone());
    ready_node(&h.client, "n1", json!({"role": "edge"})).await;
    ready_node(&h.client, "n2", json!({"role": "edge"})).await;
    ready_node(&h.client, "n3", json!({"role": "core"})).await;
    daemonset(&h, "edge-agent", json!({"nodeSelector": {"role": "edge"}})).await;
    daemonset(&h, "agent", json!({})).await;

    let pods = on_nodes(&h, "agent", &["n1", "n2", "n3"]).await;
    let pod = &pods[0];
    let labels = pod.metadata.labels.as_ref().expect("labels");
    assert!(labels.contains_key("controller-revision-hash"));
    assert_eq!(
        labels.get("pod-template-generation").map(String::as_str),
        Some("1")
    );
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    assert!(
        tolerations
            .iter()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unschedulable"))
    );
    on_nodes(&h, "edge-agent", &["n1", "n2"]).await;

    let status = eventually("agent status", || async {
        let s = h
            .api::<DaemonSet>()
            .get("agent")
            .await
            .expect("get")
            .status?;
        (s.current_number_scheduled == 3).then_some(s)
    })
    .await;
    assert_eq!(status.desired_number_scheduled, 3);
    assert_eq!(status.number_misscheduled, 0);
    assert_eq!(status.number_ready, 0);
    assert_eq!(status.number_unavailable, Some(3));
    assert_eq!(status.updated_number_scheduled, Some(3));
    assert_eq!(status.observed_generation, Some(1));

    for pod in &pods {
        h.mark_ready(pod).await;
    }
    eventually("three ready", || async {
        let s = h
            .api::<DaemonSet>()
            .get("agent")
            .await
            .expect("get")
            .status?;
        (s.number_ready == 3 && s.number_available == Some(3)).then_some(())
    })
    .await;

    // A new node gets a pod; a relabelled one loses the edge agent; a deleted one loses its pods.
    ready_node(&h.client, "n4", json!({"role": "core"})).await;
    on_nodes(&h, "agent", &["n1", "n2", "n3", "n4"]).await;
    nodes
        .patch(
            "n2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": "core"}}})),
        )
        .await
        .expect("relabel");
    on_nodes(&h, "edge-agent", &["n1"]).await;
    nodes
        .delete("n4", &DeleteParams::default())
        .await
        .expect("delete node");
    on_nodes(&h, "agent", &["n1", "n2", "n3"]).await;

    // An untolerated NoSchedule taint keeps a running pod; NoExecute evicts it.
    nodes
        .patch(
            "n3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}})),
        )
        .await
        .expect("taint");
    let status = eventually("n3 no longer desired", || async {
        let s = h
            .api::<DaemonSet>()
            .get("agent")
            .await
            .expect("get")
            .status?;
        (s.desired_number_scheduled == 2).then_some(s)
    })
    .await;
    assert_eq!(status.number_misscheduled, 1);
    on_nodes(&h, "agent", &["n1", "n2", "n3"]).await;
    nodes
        .patch(
            "n3",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
            {"key": "dedicated", "value": "db", "effect": "NoExecute"}]}})),
        )
        .await
        .expect("taint");
    on_nodes(&h, "agent", &["n1", "n2"]).await;
}

#[tokio::test]
async fn rolling_update_replaces_pods_within_max_unavailable() {
    let h = start().await;
    for n in ["n1", "n2", "n3"] {
        ready_node(&h.client, n, json!({})).await;
    }
    daemonset(&h, "ru", json!({})).await;
    on_nodes(&h, "ru", &["n1", "n2", "n3"]).await;
    h.mark_all_ready("app=ru").await;
    eventually("all available", || async {
        let s = h.api::<DaemonSet>().get("ru").await.expect("get").status?;
        (s.number_available == Some(3)).then_some(())
    })
    .await;

    h.merge_patch::<DaemonSet>("ru", json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "agent:2"}]}}}}))
        .await;
    // Never more than one node without an available pod (maxUnavailable 1), until all are new.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let pods = h.pods("app=ru").await;
        let available = pods.iter().filter(|p| support::is_ready(p)).count();
        assert!(
            available >= 2,
            "more than maxUnavailable pods down: {available} available"
        );
        if pods.len() == 3
            && available == 3
            && pods.iter().all(|p| image(p).as_deref() == Some("agent:2"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout did not finish"
        );
        h.mark_all_ready("app=ru").await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = eventually("updated status", || async {
        let s = h.api::<DaemonSet>().get("ru").await.expect("get").status?;
        (s.updated_number_scheduled == Some(3) && s.number_available == Some(3)).then_some(s)
    })
    .await;
    assert_eq!(status.observed_generation, Some(2));
}
